//! WebSocket: `GET /live/{profile}/ws`.
//!
//! The upgrade is done here rather than by `warp::ws()`: warp's upgrade
//! gives every connection tungstenite's 128 KiB read buffer, which would be
//! most of an idle session's memory (see docs/ARCHITECTURE.md). Past the
//! upgrade: [`connection`] runs the session over a [`socket`], which reads
//! and writes the frames of [`frame`] with no buffer kept while idle.

use std::sync::Arc;

use hyper::upgrade::{OnUpgrade, Upgraded};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::disconnect::Disconnect;
use crate::error::EdgeError;
use crate::metrics::Transport;
use crate::server::Io;
use crate::transport::address::{self, ClientAddress};
use crate::transport::{Context, credentials, parse_ids, query_param};

mod connection;
pub(crate) mod frame;
mod socket;

use connection::{Connection, refuse, run};
pub(crate) use connection::{Request, parse_frame};
pub use socket::READ_CHUNK;
use socket::Socket;

pub fn routes(
    context: Arc<Context>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "ws")
        .and(warp::get())
        .and(warp::any().map(move || context.clone()))
        .and(warp::header::headers_cloned())
        .and(address::peer())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            |profile: String,
             state: Arc<Context>,
             headers: HeaderMap,
             peer,
             on_upgrade,
             query: String| async move {
                let address = ClientAddress::of(&headers, peer);
                upgrade(&state, &profile, &headers, address, on_upgrade, &query)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

async fn upgrade(
    state: &Arc<Context>,
    profile: &str,
    headers: &HeaderMap,
    address: Option<ClientAddress>,
    on_upgrade: Option<OnUpgrade>,
    query: &str,
) -> Result<Response, EdgeError> {
    let identity = state.admit(credentials(headers, query), address).await?;
    let accept = accept_key(headers)?;
    super::same_site(headers, &state.settings.allowed_origins, false)?;
    let on_upgrade = on_upgrade.ok_or(EdgeError::NotUpgrade)?;
    let (profile, last_position) = parse_ids(profile, query_param(query, "last_position"))?;
    let place = state.hold_place(address)?;
    // A second session of the pair is refused after the upgrade, with a
    // close code a browser can read (it cannot read an HTTP status).
    let opened = state
        .open_as(&identity, profile, Transport::Websocket, last_position)
        .await;
    let opened = match opened {
        Err(EdgeError::AlreadyLive) => None,
        opened => Some(opened?),
    };
    let state = state.clone();
    let tasks = state.tasks.clone();
    state.tasks.clone().spawn(async move {
        // The session holds its lock and its places from now on: an upgrade
        // that never completes must not keep them.
        let deadline = state.settings.upgrade_timeout;
        let upgraded = match tokio::time::timeout(deadline, on_upgrade).await {
            Ok(Ok(upgraded)) => upgraded,
            Ok(Err(err)) => {
                return tracing::debug!(error = %err, "WebSocket upgrade did not complete");
            }
            Err(_) => {
                state.metrics.session_ended("upgrade_timeout");
                return tracing::info!(
                    timeout_secs = deadline.as_secs(),
                    "WebSocket upgrade not done in time: session dropped"
                );
            }
        };
        let Some((tcp, read)) = unwrap_tcp(upgraded) else {
            return tracing::error!("WebSocket upgrade on a connection that is not TCP");
        };
        let socket = Socket::new(
            tcp,
            &read,
            state.settings.max_frame_bytes,
            state.settings.fragment_timeout,
        );
        match opened {
            // A task of its own: this one's state (the upgrade, the
            // handshake) would otherwise stay allocated beside the session's
            // for as long as it lives.
            Some(session) => {
                let connection = Box::new(Connection {
                    socket,
                    session,
                    _place: place,
                });
                drop(tasks.spawn(run(connection, state)))
            }
            None => refuse(socket, Disconnect::AlreadyLive).await,
        }
    });
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert("upgrade", warp::http::HeaderValue::from_static("websocket"));
    h.insert(
        "connection",
        warp::http::HeaderValue::from_static("upgrade"),
    );
    h.insert(
        "sec-websocket-accept",
        warp::http::HeaderValue::from_str(&accept).map_err(|_| EdgeError::NotUpgrade)?,
    );
    Ok(response)
}

/// The TCP stream under an upgraded connection, and what hyper had read
/// past the upgrade request (usually nothing). The socket is used bare,
/// without hyper's wrapper (a boxed stream and its buffer), which costs
/// memory in every idle session, nor the HTTP deadlines' watch
/// (`crate::server`): the session has deadlines of its own.
fn unwrap_tcp(upgraded: Upgraded) -> Option<(TcpStream, Vec<u8>)> {
    let parts = hyper_util::server::conn::auto::upgrade::downcast::<Io>(upgraded).ok()?;
    Some((parts.io.into_inner().into_inner(), parts.read_buf.to_vec()))
}

/// The `Sec-WebSocket-Accept` answer, if this is a WebSocket upgrade.
fn accept_key(headers: &HeaderMap) -> Result<String, EdgeError> {
    let has = |name: &str, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has("connection", "upgrade")
        || !has("upgrade", "websocket")
        || !has("sec-websocket-version", "13")
    {
        return Err(EdgeError::NotUpgrade);
    }
    let key = headers
        .get("sec-websocket-key")
        .ok_or(EdgeError::NotUpgrade)?;
    Ok(derive_accept_key(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_headers as headers;

    #[test]
    fn the_accept_key_follows_rfc_6455() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(
            accept_key(&h).expect("upgrade"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(matches!(
            accept_key(&headers(&[("upgrade", "websocket")])),
            Err(EdgeError::NotUpgrade)
        ));
    }
}
