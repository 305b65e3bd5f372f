//! The operations endpoints every service serves: `/healthz` (the process
//! is alive), `/readyz` (it wants new traffic) and `/metrics` (Prometheus
//! text format).

use std::sync::Arc;

use prometheus_client::registry::Registry;
use warp::Filter;
use warp::http::StatusCode;

/// What `/readyz` answers: a function, so each service decides.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// The three routes, to be combined with a service's own.
pub fn routes(
    registry: Arc<Registry>,
    ready: Readiness,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::Reply::into_response("ok"));
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let (status, text) = if ready() {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        };
        warp::reply::Reply::into_response(warp::reply::with_status(text, status))
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &registry) {
            Ok(()) => warp::reply::Reply::into_response(warp::reply::with_header(
                text,
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )),
            Err(err) => {
                tracing::error!(error = %err, "cannot encode metrics");
                warp::reply::Reply::into_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    });
    healthz.or(readyz).unify().or(metrics).unify()
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, letting
/// requests in progress finish.
pub async fn serve<F>(
    routes: F,
    listener: tokio::net::TcpListener,
    shutdown: crate::shutdown::CancellationToken,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown.cancelled_owned())
        .run()
        .await;
}

/// The JSON 404 of services that have only the operations routes.
pub async fn not_found(
    _: warp::Rejection,
) -> Result<warp::reply::Response, std::convert::Infallible> {
    let body = warp::reply::json(&serde_json_error("not_found", "no such route"));
    Ok(warp::reply::Reply::into_response(warp::reply::with_status(
        body,
        StatusCode::NOT_FOUND,
    )))
}

fn serde_json_error(
    code: &'static str,
    message: &'static str,
) -> std::collections::BTreeMap<&'static str, &'static str> {
    [("error", code), ("message", message)]
        .into_iter()
        .collect()
}
