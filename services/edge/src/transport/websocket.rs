//! WebSocket: `GET /live/{profile}/ws`.
//!
//! The upgrade is done here rather than by `warp::ws()`, to choose the
//! socket's buffer sizes: warp's upgrade gives every connection
//! tungstenite's 128 KiB read buffer, which is most of an idle session's
//! memory (see docs/ARCHITECTURE.md).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::app::EdgeState;
use crate::error::{EdgeError, close_code};
use crate::events::{ClientFrame, MAX_REF_LEN, Outbound, ServerEvent};
use crate::hub::{End, Next};
use crate::metrics::Transport;
use crate::session::{self, LiveSession};
use crate::transport::{authenticate, query_param};

/// Read buffer of each socket, allocated for its whole life: idle sessions
/// hold it. Frames larger than this are still read whole; the buffer only
/// grows for them. (tungstenite's default is 128 KiB.)
const READ_BUFFER_BYTES: usize = 256;

/// How long a close frame may take to write before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes(
    state: Arc<EdgeState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "ws")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            |profile: String,
             state: Arc<EdgeState>,
             headers: HeaderMap,
             on_upgrade,
             query: String| async move {
                let last_id = query_param(&query, "last_id");
                upgrade(&state, &profile, &headers, on_upgrade, last_id)
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
    last_id: Option<&str>,
) -> Result<Response, EdgeError> {
    let cookie = headers.get("cookie").and_then(|v| v.to_str().ok());
    let user = authenticate(state, cookie)?;
    let accept = accept_key(headers)?;
    check_origin(headers, &state.settings.allowed_origins)?;
    let on_upgrade = on_upgrade.ok_or(EdgeError::NotUpgrade)?;
    // A second session of the pair is refused after the upgrade, with a
    // close code a browser can read (it cannot read an HTTP status).
    let opened = match session::open(state, user, profile, Transport::Websocket, last_id).await {
        Err(EdgeError::AlreadyLive) => None,
        opened => Some(opened?),
    };
    let state = state.clone();
    let tasks = state.tasks.clone();
    state.tasks.clone().spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return tracing::debug!(error = %err, "WebSocket upgrade did not complete"),
        };
        let max = state.settings.limits.max_frame_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_write_buffer_size(max + READ_BUFFER_BYTES)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let Some((tcp, read)) = unwrap_tcp(upgraded) else {
            return tracing::error!("WebSocket upgrade on a connection that is not TCP");
        };
        let socket =
            WebSocketStream::from_partially_read(tcp, read, Role::Server, Some(config)).await;
        match opened {
            // A task of its own: this one's state (the upgrade, the
            // handshake) would otherwise stay allocated beside the session's
            // for as long as it lives.
            Some(session) => {
                drop(tasks.spawn(run(Box::new(Connection { socket, session }), state)))
            }
            None => refuse(socket, &EdgeError::AlreadyLive, close_code::ALREADY_LIVE).await,
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
/// memory in every idle session.
fn unwrap_tcp(upgraded: Upgraded) -> Option<(TcpStream, Vec<u8>)> {
    let parts =
        hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded).ok()?;
    Some((parts.io.into_inner(), parts.read_buf.to_vec()))
}

/// Says why in an error event, then closes with `code`.
async fn refuse(mut socket: Socket, err: &EdgeError, code: u16) {
    let event = err.event(None);
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        socket.send(Message::Text(event.json.clone())),
    )
    .await;
    close(&mut socket, code, "already live").await;
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

/// One socket for both directions: the select loop below reads and writes
/// it in turn, so it needs no split (whose lock is per-session memory).
type Socket = WebSocketStream<TcpStream>;
/// Sends waiting for Kafka, allocated at the first send: an idle session
/// does not pay for the set. Boxed: `FuturesUnordered` allocates a stub
/// task the size of its future up front.
#[derive(Default)]
struct InFlight<'a>(Option<FuturesUnordered<PendingSend<'a>>>);

impl<'a> InFlight<'a> {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesUnordered::len)
    }

    fn push(&mut self, send: PendingSend<'a>) {
        self.0.get_or_insert_with(FuturesUnordered::new).push(send);
    }

    /// The next send to complete; `None` (at once) when there is none.
    async fn next(
        &mut self,
    ) -> Option<(Option<String>, Result<rill_domain::MessageId, EdgeError>)> {
        match &mut self.0 {
            Some(sends) => sends.next().await,
            None => None,
        }
    }
}

/// A send waiting for Kafka: its `ref` and the outcome.
type PendingSend<'a> = std::pin::Pin<
    Box<
        dyn Future<Output = (Option<String>, Result<rill_domain::MessageId, EdgeError>)>
            + Send
            + 'a,
    >,
>;

/// The socket and the session of one connection, boxed: a future keeps its
/// arguments beside its locals, so passing both by value would hold them
/// twice in every idle session's task.
struct Connection {
    socket: Socket,
    session: LiveSession,
}

/// One session: hub events out, client frames in, sends in flight awaited
/// side by side (at most `limits.max_inflight_sends`), a ping every
/// `heartbeat.interval_secs`.
async fn run(mut connection: Box<Connection>, state: Arc<EdgeState>) {
    let Connection { socket, session } = &mut *connection;
    let state = &*state;
    let mut pending = InFlight::default();
    let limits = &state.settings.limits;
    let write_timeout = Duration::from_secs(limits.slow_client_secs);
    let heartbeat = Duration::from_secs(state.settings.heartbeat.interval_secs);
    let silence_allowed = heartbeat + Duration::from_secs(state.settings.heartbeat.timeout_secs);
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let ended = loop {
        let out = tokio::select! {
            next = session.next() => match next {
                Next::Event(event) => event,
                // Boxed, as the other rare paths: the session's future is as
                // large as its largest await, for every idle session.
                Next::End(end) => break Box::pin(end_session(socket, end, state)).await,
            },
            Some((reference, result)) = pending.next(), if pending.len() > 0 => {
                send_result(reference, result)
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence_allowed {
                    break "heartbeat_timeout";
                }
                match tokio::time::timeout(write_timeout, socket.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => break "closed",
                    Err(_) => break "too_slow",
                }
            }
            frame = socket.next(), if pending.len() < limits.max_inflight_sends => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match handle_frame(&text, session) {
                        Ok(Request::Send { body, reference }) => {
                            let (user, profile) = (session.user, session.profile);
                            pending.push(Box::pin(async move {
                                (reference, state.publisher.publish(user, profile, body).await)
                            }));
                            continue;
                        }
                        Ok(Request::Ping) => ServerEvent::Pong.to_outbound(),
                        Err((err, reference)) => err.event(reference.as_deref()),
                    },
                    Some(Ok(Message::Binary(_))) => EdgeError::BinaryFrame.event(None),
                    Some(Ok(Message::Close(_))) | None => break "closed",
                    Some(Ok(_)) => continue, // pings and pongs: tungstenite answers pings itself
                    Some(Err(tungstenite::Error::Capacity(err))) => {
                        tracing::info!(user_id = %session.user, error = %err, "frame too large: closing");
                        Box::pin(close(socket, close_code::TOO_LARGE, "frame too large")).await;
                        break "frame_too_large";
                    }
                    Some(Err(err)) => {
                        tracing::debug!(user_id = %session.user, error = %err, "WebSocket read failed");
                        break "closed";
                    }
                }
            },
        };
        match tokio::time::timeout(write_timeout, write(socket, &out, state)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break "closed",
            Err(_) => break "too_slow",
        }
    };
    state.metrics.session_ended(ended);
    tracing::info!(user_id = %session.user, profile_id = %session.profile, reason = ended, "WebSocket session ended");
    // Sends already handed to Kafka complete; their acks have no reader.
    while pending.next().await.is_some() {}
}

/// Tells the client why its session ends, then closes; the reason, for
/// metrics.
async fn end_session(socket: &mut Socket, end: End, state: &EdgeState) -> &'static str {
    let (event, reason) = session::last_event(end, state.settings.drain.reconnect_jitter_ms);
    if let Some(event) = event {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, write(socket, &event, state)).await;
    }
    let code = match end {
        End::NotAMember => close_code::NOT_A_MEMBER,
        End::Reconnect(_) => close_code::GOING_AWAY,
        End::TooSlow => close_code::TOO_SLOW,
    };
    close(socket, code, reason).await;
    reason
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
        Err(err) => err.event(reference.as_deref()),
    }
}

async fn write(
    socket: &mut Socket,
    out: &Outbound,
    state: &EdgeState,
) -> Result<(), tungstenite::Error> {
    socket.send(Message::Text(out.json.clone())).await?;
    state.metrics.delivered_events.inc();
    Ok(())
}

async fn close(socket: &mut Socket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            linger(socket.get_mut()).await;
        }
    })
    .await;
}

/// Reads and drops what the client still sends until it closes its side:
/// closing a socket with unread bytes in it (the rest of a refused
/// oversized frame, say) makes the kernel reset the connection, and the
/// client may then never read the close frame sent just before.
async fn linger(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt as _;
    let mut sink = [0u8; 512];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
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
