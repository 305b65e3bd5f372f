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

/// An error response: `status`, the body `{"error": code, "message": text}`,
/// `Retry-After` on 503, and `Connection: close` when the request body was
/// not read (413, 411), so that a proxy does not reuse the connection.
pub fn error_response(status: StatusCode, code: &str, message: String) -> warp::reply::Response {
    let body: std::collections::BTreeMap<&str, &str> =
        [("error", code), ("message", message.as_str())].into();
    let reply = warp::reply::with_status(warp::reply::json(&body), status);
    let mut response = warp::reply::Reply::into_response(reply);
    let headers = response.headers_mut();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert("retry-after", RETRY_AFTER_SECS.into());
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::LENGTH_REQUIRED {
        headers.insert("connection", warp::http::HeaderValue::from_static("close"));
    }
    response
}

/// `response` with `Retry-After: secs` (how long a 429 says to wait).
pub fn with_retry_after(mut response: warp::reply::Response, secs: u64) -> warp::reply::Response {
    response
        .headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from(secs));
    response
}

/// How long a client should wait before retrying a 503, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

/// warp's own rejections (no route, body too large, wrong method) as JSON
/// errors. Body limits are checked before the method: warp's combined
/// rejection also holds the 405 of the other routes on the same path.
pub async fn recover(
    rejection: warp::Rejection,
) -> Result<warp::reply::Response, std::convert::Infallible> {
    let (status, code, message) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_owned(),
        )
    } else if rejection.find::<crate::json_body::BodyTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "request body too large".to_owned(),
        )
    } else if rejection
        .find::<crate::json_body::BodyUnreadable>()
        .is_some()
    {
        (
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the request body could not be read to its end".to_owned(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed".to_owned(),
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{rejection:?}"),
        )
    };
    Ok(error_response(status, code, message))
}
