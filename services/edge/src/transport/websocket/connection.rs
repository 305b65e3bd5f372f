//! A WebSocket session once upgraded: hub events out, client frames in
//! (sends go to Kafka), heartbeats, and how it closes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rill_runtime::rate_limit::TokenBucket;
use tokio::time::Instant;

use super::frame::Message;
use super::socket::{CLOSE_TIMEOUT, Frames, ReadError, Socket, WriteError};
use crate::disconnect::{Disconnect, close_code};
use crate::error::EdgeError;
use crate::events::{ClientFrame, MAX_REF_LEN, Outbound, ServerEvent, valid_idempotency_key};
use crate::hub::Next;
use crate::session::{LiveSession, SendError};
use crate::transport::Context;
use crate::transport::limits::AddressPermit;

/// Most bytes of events written in one go: events already queued for the
/// session when it wakes go out in one write (one system call) up to this.
const BATCH_BYTES: usize = 64 * 1024;

/// Says why in its last event, then closes with its code.
pub(super) async fn refuse(mut socket: Socket, why: Disconnect) {
    if let Some(event) = why.last_event(Duration::ZERO) {
        let mut frames = Frames::default();
        frames.text(&event.json);
        let _ = socket.write(&frames, CLOSE_TIMEOUT).await;
    }
    socket.close(why.close_code(), why.reason()).await;
}

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

    /// The answer to the next send to complete; `None` (at once) when there
    /// is none.
    async fn next(&mut self) -> Option<Arc<Outbound>> {
        match &mut self.0 {
            Some(sends) => sends.next().await,
            None => None,
        }
    }
}

/// A send waiting for Kafka; its output is the answer to the client (an
/// `ack` or an error event), small: the session's future holds it.
type PendingSend<'a> = std::pin::Pin<Box<dyn Future<Output = Arc<Outbound>> + Send + 'a>>;

/// The socket and the session of one connection, boxed: a future keeps its
/// arguments beside its locals, so passing both by value would hold them
/// twice in every idle session's task.
pub(super) struct Connection {
    pub(super) socket: Socket,
    pub(super) session: LiveSession,
    /// The session's place in its client address's count, freed with it.
    pub(super) _place: Option<AddressPermit>,
}

/// One session: hub events out, client frames in, sends in flight awaited
/// side by side (at most `limits.max_inflight_sends`), a ping at each of the
/// hub's heartbeats (every `heartbeat.interval_secs`).
///
/// A send past `limits.sends_per_session` is answered `rate_limited`, and
/// the socket is not read again until the session's bucket has a token:
/// what a flooding client sends meanwhile waits in its own TCP buffers
/// (TCP pushes back on it), instead of being read and parsed only to be
/// refused, at the cost of the honest sessions beside it.
pub(super) async fn run(mut connection: Box<Connection>, state: Arc<Context>) {
    let Connection {
        socket, session, ..
    } = &mut *connection;
    let state = &*state;
    let mut pending = InFlight::default();
    let settings = &state.settings;
    let write_timeout = settings.write_timeout;
    let silence_allowed: Duration = settings.heartbeat + settings.heartbeat_timeout;
    let mut last_heard = Instant::now();
    let mut sends = TokenBucket::new(settings.sends_per_session, std::time::Instant::now());
    // While set, the socket is not read (a send was refused until then).
    let mut unread_until: Option<Instant> = None;
    let ended = loop {
        let out = tokio::select! {
            next = session.next() => match next {
                Next::Event(event) => event,
                Next::Heartbeat => {
                    if last_heard.elapsed() > silence_allowed {
                        break Disconnect::HeartbeatTimeout;
                    }
                    match socket.ping(write_timeout).await {
                        Ok(()) => continue,
                        Err(err) => break write_failed(&err),
                    }
                }
                // Boxed, as the other rare paths: the session's future is as
                // large as its largest await, for every idle session.
                Next::End(end) => break Box::pin(end_session(socket, end, state)).await,
            },
            Some(answer) = pending.next(), if pending.len() > 0 => answer,
            () = tokio::time::sleep_until(unread_until.unwrap_or_else(Instant::now)), if unread_until.is_some() => {
                unread_until = None;
                continue;
            }
            message = socket.read(), if pending.len() < settings.max_inflight_sends && unread_until.is_none() => {
                last_heard = Instant::now();
                match message {
                    Ok(Some(Message::Text(text))) => match handle_frame(&text, session) {
                        Ok(Request::Send { reference, .. })
                            if let Err(wait) = sends.try_take(std::time::Instant::now()) =>
                        {
                            state.metrics.refused("rate_limited");
                            unread_until = Some(Instant::now() + wait);
                            EdgeError::RateLimited(wait).event(reference.as_deref())
                        }
                        Ok(Request::Send {
                            body,
                            reference,
                            key,
                        }) => {
                            let (user, profile) = (session.user, session.profile);
                            pending.push(Box::pin(async move {
                                let sent = state
                                    .sessions
                                    .send_live(user, profile, body, key.as_deref())
                                    .await;
                                send_result(reference, sent)
                            }));
                            continue;
                        }
                        Ok(Request::Ping) => ServerEvent::Pong.to_outbound(),
                        Err((err, reference)) => err.event(reference.as_deref()),
                    },
                    Ok(Some(Message::Binary)) => EdgeError::BinaryFrame.event(None),
                    Ok(Some(Message::Ping(payload))) => {
                        match socket.pong(&payload, write_timeout).await {
                            Ok(()) => continue,
                            Err(err) => break write_failed(&err),
                        }
                    }
                    Ok(Some(Message::Pong)) => continue,
                    Ok(Some(Message::Close(code))) => {
                        // Answered with the client's own code (RFC 6455, 5.5.1).
                        Box::pin(socket.answer_close(code.unwrap_or(close_code::NORMAL))).await;
                        break Disconnect::Closed;
                    }
                    Ok(None) => break Disconnect::Closed,
                    Err(ReadError::Unfinished) => {
                        tracing::info!(user_id = %session.user, timeout_secs = settings.fragment_timeout.as_secs(), "WebSocket message not finished in time: closing");
                        let why = Disconnect::MessageTimeout;
                        Box::pin(socket.close(why.close_code(), "message not finished in time")).await;
                        break why;
                    }
                    Err(ReadError::Frame(err)) => {
                        tracing::info!(user_id = %session.user, error = %err, "bad frame: closing");
                        let why = err.disconnect();
                        Box::pin(socket.close(why.close_code(), "bad frame")).await;
                        break why;
                    }
                    Err(ReadError::Io(err)) => {
                        tracing::debug!(user_id = %session.user, error = %err, "WebSocket read failed");
                        break Disconnect::Closed;
                    }
                }
            },
        };
        let mut frames = Frames::default();
        frames.text(&out.json);
        let mut events = 1;
        while frames.len() < BATCH_BYTES
            && let Some(more) = session.ready()
        {
            frames.text(&more.json);
            events += 1;
        }
        match socket.write(&frames, write_timeout).await {
            Ok(()) => {
                state.metrics.delivered_events.inc_by(events);
            }
            Err(err) => break write_failed(&err),
        }
    };
    let reason = ended.reason();
    state.metrics.session_ended(reason);
    tracing::info!(user_id = %session.user, profile_id = %session.profile, reason, "WebSocket session ended");
    // Sends already handed to Kafka complete; their acks have no reader.
    while pending.next().await.is_some() {}
}

/// Tells the client why its session ends (ended from outside: the hub),
/// then closes with the end's code.
async fn end_session(socket: &mut Socket, end: Disconnect, state: &Context) -> Disconnect {
    if let Some(event) = end.last_event(state.settings.reconnect_jitter) {
        let mut frames = Frames::default();
        frames.text(&event.json);
        if socket.write(&frames, CLOSE_TIMEOUT).await.is_ok() {
            state.metrics.delivered_events.inc();
        }
    }
    socket.close(end.close_code(), end.reason()).await;
    end
}

/// Why a session ended on a failed write.
fn write_failed(err: &WriteError) -> Disconnect {
    match err {
        WriteError::Closed(_) => Disconnect::Closed,
        WriteError::TooSlow => Disconnect::TooSlow,
    }
}

/// What a client's text frame asks for, once checked.
#[derive(Debug)]
pub(crate) enum Request {
    Send {
        body: String,
        reference: Option<String>,
        key: Option<String>,
    },
    Ping,
}

fn handle_frame(text: &str, session: &LiveSession) -> Result<Request, (EdgeError, Option<String>)> {
    let request = parse_frame(text);
    if let Err((EdgeError::BadJson(err), _)) = &request {
        tracing::debug!(user_id = %session.user, error = %err, "bad frame");
    }
    request
}

/// A client's text frame, checked: JSON of a known type, a `ref` of at
/// most [`MAX_REF_LEN`] characters, a valid idempotency key. A refused
/// frame comes with the `ref` its error event carries, when it can be
/// trusted.
pub(crate) fn parse_frame(text: &str) -> Result<Request, (EdgeError, Option<String>)> {
    let frame = serde_json::from_str::<ClientFrame>(text)
        .map_err(|err| (EdgeError::BadJson(err.to_string()), None))?;
    match frame {
        ClientFrame::Ping => Ok(Request::Ping),
        ClientFrame::Send {
            reference: Some(r), ..
        } if r.chars().count() > MAX_REF_LEN => {
            Err((EdgeError::RefTooLong { max: MAX_REF_LEN }, None))
        }
        ClientFrame::Send {
            idempotency_key: Some(key),
            reference,
            ..
        } if !valid_idempotency_key(&key) => Err((EdgeError::BadIdempotencyKey, reference)),
        ClientFrame::Send {
            body,
            reference,
            idempotency_key,
        } => Ok(Request::Send {
            body,
            reference,
            key: idempotency_key,
        }),
    }
}

fn send_result(
    reference: Option<String>,
    result: Result<rill_domain::MessageId, SendError>,
) -> Arc<Outbound> {
    match result {
        Ok(id) => ServerEvent::Ack {
            reference: reference.as_deref(),
            id,
        }
        .to_outbound(),
        Err(err) => EdgeError::from(err).event(reference.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_and_a_ref_is_echoed_only_within_its_limit() {
        assert!(matches!(
            parse_frame(r#"{"type":"ping"}"#),
            Ok(Request::Ping)
        ));
        let long = "r".repeat(MAX_REF_LEN + 1);
        let too_long = format!(r#"{{"type":"send","body":"hi","ref":"{long}"}}"#);
        assert!(matches!(
            parse_frame(&too_long),
            Err((EdgeError::RefTooLong { .. }, None))
        ));
        let bad_key = r#"{"type":"send","body":"hi","ref":"c1","idempotency_key":"a b"}"#;
        assert!(matches!(
            parse_frame(bad_key),
            Err((EdgeError::BadIdempotencyKey, Some(r))) if r == "c1"
        ));
        assert!(matches!(
            parse_frame("{"),
            Err((EdgeError::BadJson(_), None))
        ));
    }
}
