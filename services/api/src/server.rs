//! The api's HTTP server: the routes on a bound listener until shutdown,
//! letting requests in progress finish.
//!
//! Not `warp::serve` (nor `rill_runtime::ops::serve`, which runs it):
//! warp logs every connection that fails at ERROR, and nearly all of them
//! fail through the client: a request line or header hyper cannot parse
//! (hyper has already answered 400), a client that hangs up mid-request.
//! Here each failure is logged at the level of its cause
//! ([`connection_error_level`]): ERROR is kept for the api's own faults.
//! The peer's address reaches the routes as a request extension
//! ([`peer`]), as `warp::addr::remote` would.
//!
//! Every connection has read deadlines (`rill_runtime::http_deadlines`):
//! a request's headers within `limits.header_read_timeout_secs` of its
//! first byte (slowloris), its body within `limits.body_read_timeout_secs`
//! of its headers, and a connection with no request in progress closed
//! after `limits.idle_timeout_secs`.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rill_runtime::http_deadlines::{Activity, Deadlines, RequestBody};
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use tracing::Level;
use warp::Filter;
use warp::reply::Response;

/// How long accepting waits after a failure that is not the peer's (out of
/// file descriptors, say), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The address of the peer of a request's connection.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The peer's address of the request (the proxy's, behind Traefik).
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>().map(|peer: Option<Peer>| peer.map(|Peer(addr)| addr))
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then waits
/// for the connections' requests in progress. A connection past one of
/// its `deadlines` is dropped.
pub async fn serve<F>(
    routes: F,
    listener: TcpListener,
    shutdown: CancellationToken,
    deadlines: Deadlines,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_peers_doing(&err) => {
                tracing::debug!(error = %err, "accept failed");
                continue;
            }
            Err(err) => {
                tracing::error!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let routes = TowerToHyperService::new(warp::service(routes.clone()));
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<RequestBody<Incoming>>| {
                request.extensions_mut().insert(Peer(addr));
                hyper::service::Service::call(&routes, request)
            },
        );
        let activity = Activity::new();
        let service = activity.service(service);
        let io = TokioIo::new(activity.io(stream));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let http = auto::Builder::new(TokioExecutor::new());
            let connection = watcher.watch(http.serve_connection(io, service));
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        log_connection_error(&*err, addr);
                    }
                }
                expired = activity.expired(deadlines) => {
                    tracing::debug!(peer = %addr, reason = expired.as_str(), "connection closed by its read deadline");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn log_connection_error(err: &(dyn StdError + 'static), peer: SocketAddr) {
    match connection_error_level(err) {
        Level::ERROR => tracing::error!(error = %err, %peer, "connection failed"),
        Level::WARN => tracing::warn!(error = %err, %peer, "connection failed"),
        _ => tracing::debug!(error = %err, %peer, "connection failed"),
    }
}

/// The level a failed connection is logged at, by its cause: DEBUG for
/// what clients do (a malformed or incomplete request, a hang-up, a
/// timeout), ERROR for a fault of the api's own (hyper's "user" errors:
/// the service or its response broke HTTP), WARN for anything else.
pub fn connection_error_level(err: &(dyn StdError + 'static)) -> Level {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(err) = err.downcast_ref::<hyper::Error>() {
            let clients_doing = err.is_parse()
                || err.is_incomplete_message()
                || err.is_timeout()
                || err.is_canceled()
                || err.is_closed()
                || err.is_body_write_aborted()
                || err.is_shutdown();
            if clients_doing {
                return Level::DEBUG;
            }
            if err.is_user() {
                return Level::ERROR;
            }
        }
        if let Some(err) = err.downcast_ref::<std::io::Error>()
            && is_peers_doing(err)
        {
            return Level::DEBUG;
        }
        cause = err.source();
    }
    Level::WARN
}

/// An I/O error that a peer causes by going away or stalling.
fn is_peers_doing(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
            | ErrorKind::TimedOut
            | ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// What hyper's server makes of `request` sent whole on a connection
    /// that the client then closes: the connection's error, if any.
    async fn serve_one(request: &'static [u8]) -> Option<hyper::Error> {
        let (mut client, server) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(|_request: hyper::Request<Incoming>| async {
            Ok::<_, Infallible>(hyper::Response::new(String::new()))
        });
        let connection = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        client.write_all(request).await.expect("write the request");
        client.shutdown().await.expect("close the client's side");
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        connection.await.expect("the connection task").err()
    }

    #[tokio::test]
    async fn a_malformed_header_is_the_clients_doing() {
        let err = serve_one(b"GET / HTTP/1.1\r\nhost: api\r\nbad header\r\n\r\n")
            .await
            .expect("hyper refuses the header");
        assert!(err.is_parse(), "{err:?}");
        assert_eq!(connection_error_level(&err), Level::DEBUG);
    }

    #[tokio::test]
    async fn a_request_cut_short_is_the_clients_doing() {
        let err = serve_one(b"GET / HTTP/1.1\r\nhost: a")
            .await
            .expect("the request never ends");
        assert!(err.is_incomplete_message(), "{err:?}");
        assert_eq!(connection_error_level(&err), Level::DEBUG);
    }

    #[test]
    fn io_errors_by_cause() {
        let reset = std::io::Error::from(ErrorKind::ConnectionReset);
        assert_eq!(connection_error_level(&reset), Level::DEBUG);
        let other = std::io::Error::other("no file descriptors left");
        assert_eq!(connection_error_level(&other), Level::WARN);
    }

    #[tokio::test]
    async fn a_service_that_fails_is_the_apis_own_fault() {
        let (mut client, server) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(|_request: hyper::Request<Incoming>| async {
            Err::<hyper::Response<String>, _>(std::io::Error::other("handler broke"))
        });
        let connection = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: api\r\n\r\n")
            .await
            .expect("write the request");
        let err = connection
            .await
            .expect("the connection task")
            .expect_err("the service failed");
        assert_eq!(connection_error_level(&err), Level::ERROR, "{err:?}");
    }
}
