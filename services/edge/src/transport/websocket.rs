//! WebSocket: `GET /live/{profile}/ws`.
//!
//! The upgrade is done here rather than by `warp::ws()`, to choose the
//! socket's buffer sizes: warp's upgrade gives every connection
//! tungstenite's 128 KiB read buffer, which is most of an idle session's
//! memory (see docs/ARCHITECTURE.md).

use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::app::EdgeState;
use crate::error::EdgeError;
use crate::events::{ClientFrame, MAX_REF_LEN, Outbound, ServerEvent};
use crate::hub::Next;
use crate::metrics::Transport;
use crate::transport::{LiveSession, authenticate, open_session};

/// Read and write buffer of each socket. Frames larger than this are still
/// read whole; the buffer only grows for them.
const SOCKET_BUFFER_BYTES: usize = 1024;

/// Close code when the user is unbound from the profile (4000-4999 are the
/// application's; 4403 echoes HTTP 403).
pub const NOT_A_MEMBER_CLOSE_CODE: u16 = 4403;

pub fn routes(
    state: Arc<EdgeState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "ws")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .then(
            |profile: String, state: Arc<EdgeState>, headers: HeaderMap, on_upgrade| async move {
                upgrade(&state, &profile, &headers, on_upgrade)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

async fn upgrade(
    state: &Arc<EdgeState>,
    profile: &str,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, EdgeError> {
    let cookie = headers.get("cookie").and_then(|v| v.to_str().ok());
    let user = authenticate(state, cookie)?;
    let accept = accept_key(headers)?;
    check_origin(headers, &state.settings.allowed_origins)?;
    let on_upgrade = on_upgrade.ok_or(EdgeError::NotUpgrade)?;
    let session = open_session(state, user, profile, Transport::Websocket).await?;
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let max = state.settings.limits.max_frame_bytes;
                let config = WebSocketConfig::default()
                    .read_buffer_size(SOCKET_BUFFER_BYTES)
                    .write_buffer_size(0)
                    .max_write_buffer_size(max + SOCKET_BUFFER_BYTES)
                    .max_message_size(Some(max))
                    .max_frame_size(Some(max));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run(socket, session, &state).await;
            }
            Err(err) => tracing::debug!(error = %err, "WebSocket upgrade did not complete"),
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

/// Browsers send `Origin` with every WebSocket upgrade; a page of another
/// site must not open a session with the user's cookie. Clients that are not
/// browsers send no `Origin` and are allowed.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), EdgeError> {
    let Some(origin) = headers.get("origin") else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| EdgeError::CrossOrigin("<not text>".into()))?;
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    if authority.is_some() && authority == host {
        return Ok(());
    }
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(EdgeError::CrossOrigin(origin.to_owned()))
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// One session: hub events out, client frames in, sends in flight awaited
/// side by side (at most `limits.max_inflight_sends`).
async fn run(socket: Socket, mut session: LiveSession, state: &EdgeState) {
    let (mut sink, mut stream) = socket.split();
    let mut pending = FuturesUnordered::new();
    let max_inflight = state.settings.limits.max_inflight_sends;
    if write(&mut sink, &session.ready_event(&state.edge_id), state)
        .await
        .is_err()
    {
        return;
    }
    loop {
        let out = tokio::select! {
            _ = state.shutdown.cancelled() => {
                close(&mut sink, CloseCode::Away, "edge shutting down: reconnect").await;
                break;
            }
            next = session.subscription.next() => match next {
                Next::Event(event) => event,
                Next::Evicted => {
                    let _ = write(&mut sink, &error_event(&EdgeError::NotAMember, None), state).await;
                    let code = CloseCode::Library(NOT_A_MEMBER_CLOSE_CODE);
                    close(&mut sink, code, "no longer a member of this profile").await;
                    break;
                }
            },
            Some((reference, result)) = pending.next(), if !pending.is_empty() => {
                send_result(reference, result)
            }
            frame = stream.next(), if pending.len() < max_inflight => match frame {
                Some(Ok(Message::Text(text))) => match handle_frame(&text, &session) {
                    Ok(Request::Send { body, reference }) => {
                        let (user, profile) = (session.user, session.profile);
                        pending.push(async move {
                            (reference, state.publisher.publish(user, profile, body).await)
                        });
                        continue;
                    }
                    Ok(Request::Ping) => ServerEvent::Pong.to_outbound(),
                    Err((err, reference)) => error_event(&err, reference.as_deref()),
                },
                Some(Ok(Message::Binary(_))) => error_event(&EdgeError::BinaryFrame, None),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
                Some(Err(tungstenite::Error::Capacity(err))) => {
                    tracing::info!(user_id = %session.user, error = %err, "frame too large: closing");
                    close(&mut sink, CloseCode::Size, "frame too large").await;
                    break;
                }
                Some(Err(err)) => {
                    tracing::debug!(user_id = %session.user, error = %err, "WebSocket read failed");
                    break;
                }
            },
        };
        if write(&mut sink, &out, state).await.is_err() {
            break;
        }
    }
    // Sends already handed to Kafka complete; their acks have no reader.
    while pending.next().await.is_some() {}
}

enum Request {
    Send {
        body: String,
        reference: Option<String>,
    },
    Ping,
}

fn handle_frame(text: &str, session: &LiveSession) -> Result<Request, (EdgeError, Option<String>)> {
    match serde_json::from_str::<ClientFrame>(text) {
        Err(err) => {
            tracing::debug!(user_id = %session.user, error = %err, "bad frame");
            Err((EdgeError::BadJson(err.to_string()), None))
        }
        Ok(ClientFrame::Ping) => Ok(Request::Ping),
        Ok(ClientFrame::Send {
            reference: Some(r), ..
        }) if r.chars().count() > MAX_REF_LEN => {
            Err((EdgeError::RefTooLong { max: MAX_REF_LEN }, None))
        }
        Ok(ClientFrame::Send { body, reference }) => Ok(Request::Send { body, reference }),
    }
}

fn send_result(
    reference: Option<String>,
    result: Result<rill_domain::MessageId, EdgeError>,
) -> Arc<Outbound> {
    match result {
        Ok(id) => ServerEvent::Ack {
            reference: reference.as_deref(),
            id,
        }
        .to_outbound(),
        Err(err) => error_event(&err, reference.as_deref()),
    }
}

fn error_event(err: &EdgeError, reference: Option<&str>) -> Arc<Outbound> {
    ServerEvent::Error {
        code: err.code(),
        message: &err.to_string(),
        reference,
    }
    .to_outbound()
}

async fn write(
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    out: &Outbound,
    state: &EdgeState,
) -> Result<(), tungstenite::Error> {
    sink.send(Message::Text(out.json.clone())).await?;
    state.metrics.delivered_events.inc();
    Ok(())
}

async fn close(
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    code: CloseCode,
    reason: &'static str,
) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, warp::http::HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn same_origin_and_no_origin_are_allowed() {
        assert!(check_origin(&headers(&[("host", "a:1")]), &[]).is_ok());
        assert!(check_origin(&headers(&[("host", "a:1"), ("origin", "http://a:1")]), &[]).is_ok());
    }

    #[test]
    fn other_origins_need_to_be_listed() {
        let h = headers(&[("host", "a:1"), ("origin", "http://evil.example")]);
        assert!(matches!(
            check_origin(&h, &[]),
            Err(EdgeError::CrossOrigin(_))
        ));
        assert!(check_origin(&h, &["http://evil.example".into()]).is_ok());
    }

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
