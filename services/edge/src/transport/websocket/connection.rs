//! A WebSocket session once upgraded: hub events out, client frames in
//! (sends go to Kafka), heartbeats, and how it closes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::app::EdgeState;
use crate::error::{EdgeError, close_code};
use crate::events::{ClientFrame, MAX_REF_LEN, Outbound, ServerEvent};
use crate::hub::{End, Next};
use crate::session::{self, LiveSession};

/// How long a close frame may take to write before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Says why in an error event, then closes with `code`.
pub(super) async fn refuse(mut socket: Socket, err: &EdgeError, code: u16) {
    let event = err.event(None);
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        socket.send(Message::Text(event.json.clone())),
    )
    .await;
    close(&mut socket, code, "already live").await;
}

/// One socket for both directions: the select loop below reads and writes
/// it in turn, so it needs no split (whose lock is per-session memory).
pub(super) type Socket = WebSocketStream<TcpStream>;
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
pub(super) struct Connection {
    pub(super) socket: Socket,
    pub(super) session: LiveSession,
}

/// One session: hub events out, client frames in, sends in flight awaited
/// side by side (at most `limits.max_inflight_sends`), a ping every
/// `heartbeat.interval_secs`.
pub(super) async fn run(mut connection: Box<Connection>, state: Arc<EdgeState>) {
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
