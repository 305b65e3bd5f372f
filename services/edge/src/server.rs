//! The edge's HTTP server: the routes on a bound listener until `stop`,
//! then a graceful shutdown that lets the responses in progress end, as
//! `warp::serve(..).graceful(..)` did (same hyper connection builder, with
//! upgrades), plus read deadlines for every connection, for which warp's
//! server has no hook (`rill_runtime::http_deadlines`): a request's headers
//! within `limits.header_read_timeout_secs` of its first byte, its body
//! within `limits.body_read_timeout_secs` of its headers, a keep-alive
//! connection closed after `limits.idle_timeout_secs` without a request. An upgraded WebSocket leaves these behind
//! (`transport::websocket` unwraps its socket) and has its own.
//!
//! HTTP connections (a WebSocket stops being one once upgraded) are at
//! most `limits.max_connections + limits.max_pending_connections`: past
//! it a new connection is closed at once, before hyper allocates anything
//! for it. The peer's address reaches the routes as a request extension
//! (`transport::address::Peer`), as `warp::addr::remote` would.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rill_runtime::http_deadlines::{Activity, Deadlines, RequestBody, WatchedIo};
use rill_runtime::shutdown::CancellationToken;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use warp::Filter;

use crate::metrics::EdgeMetrics;
use crate::transport::address::Peer;

/// A connection's socket as hyper holds it (what an upgrade hands back).
pub type Io = TokioIo<WatchedIo<TcpStream>>;

/// Most bytes hyper buffers for one HTTP/1 connection, each way (its
/// default is ~400 KiB): what it takes of an SSE stream that its client
/// does not read, per session, before it stops asking for more (a bound of
/// "An edge's memory", docs/ARCHITECTURE.md); request heads must fit too.
const HTTP1_BUFFER_BYTES: usize = 64 * 1024;

/// How long accepting waits after a failure that is not the peer's (out of
/// file descriptors, say), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What bounds the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub deadlines: Deadlines,
    /// HTTP connections at once.
    pub max_connections: usize,
}

/// Serves `routes` on `listener` until `stop` is cancelled, then waits for
/// the connections' responses in progress (the caller bounds that wait).
pub async fn serve<F>(
    routes: F,
    listener: TcpListener,
    stop: CancellationToken,
    limits: ConnectionLimits,
    metrics: Arc<EdgeMetrics>,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
    F: Filter<Error = Infallible>,
{
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let deadlines = limits.deadlines;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_peers_doing(&err) => continue,
            Err(err) => {
                tracing::error!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(place) = open.clone().try_acquire_owned() else {
            metrics.connection_refused();
            tracing::debug!(%peer, "too many connections: closed at once");
            continue;
        };
        let routes = TowerToHyperService::new(warp::service(routes.clone()));
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<RequestBody<Incoming>>| {
                request.extensions_mut().insert(Peer(peer));
                hyper::service::Service::call(&routes, request)
            },
        );
        let activity = Activity::new();
        let io: Io = TokioIo::new(activity.io(stream));
        let service = activity.service(service);
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _place = place;
            let mut http = auto::Builder::new(TokioExecutor::new());
            http.http1().max_buf_size(HTTP1_BUFFER_BYTES);
            let connection = watcher.watch(http.serve_connection_with_upgrades(io, service));
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        tracing::debug!(error = %err, %peer, "connection failed");
                    }
                }
                expired = activity.expired(deadlines) => {
                    metrics.connection_expired(expired.as_str());
                    match expired {
                        rill_runtime::http_deadlines::Expired::HeaderRead => tracing::info!(%peer, reason = expired.as_str(), "request headers not received in time: connection closed"),
                        rill_runtime::http_deadlines::Expired::BodyRead => tracing::info!(%peer, reason = expired.as_str(), "request body not received in time: connection closed"),
                        rill_runtime::http_deadlines::Expired::Idle => tracing::debug!(%peer, reason = expired.as_str(), "idle connection closed"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// An accept error a peer causes (it went away before it was accepted).
fn is_peers_doing(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
