//! One client of a fault run: a user with a session on one profile that
//! comes back after every disconnect with its last position (WebSocket
//! `?last_position=`, SSE `Last-Event-ID`), after the `reconnect`'s
//! `after_ms` or a back-off, and records what it sees in its
//! [`ClientLog`]. It sends what the run's sender hands it: WebSocket
//! frames on its socket, SSE clients by POST; each send's outcome goes to
//! the run's [`SendLog`]s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::faults::log::{
    ClientLog, Delivery, Outcome, QuitHow, QuitPlan, SendLog, SessionLog, body, key_of,
};
use crate::login::TokenKey;

/// How long a connect (up to the session's `ready`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before trying again after a refused connect.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// A connection token's lifetime: signed anew for each connect.
const TOKEN_SECS: u64 = 3600;

pub fn now_ms() -> u64 {
    crate::stats::now_us() / 1000
}

/// What the clients of a run share.
#[derive(Debug)]
pub struct Shared {
    pub url: String,
    pub key: TokenKey,
    pub http: reqwest::Client,
    pub clients: Vec<Mutex<ClientLog>>,
    pub sends: Mutex<Vec<SendLog>>,
    pub stop: watch::Receiver<bool>,
}

impl Shared {
    pub fn log(&self, client: usize) -> std::sync::MutexGuard<'_, ClientLog> {
        self.clients[client]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records the answer to send `key` (the first answer only).
    pub fn answer(&self, key: u64, outcome: Outcome) {
        let mut sends = self.sends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(send) = sends.iter_mut().rev().find(|s| s.key == key)
            && send.outcome == Outcome::Pending
        {
            send.outcome = outcome;
            send.answered_ms = Some(now_ms());
        }
    }

    fn token(&self, client: usize) -> String {
        let user = self.log(client).user;
        self.key.sign(user, now_ms() / 1000, TOKEN_SECS)
    }
}

/// How a session ended, for the client's next move.
struct Ended {
    why: String,
    /// The edge asked to come back after this long.
    after: Option<Duration>,
    /// The client closed it for good (its quit time, or the run's end).
    done: bool,
}

/// An open stream, before its `ready`.
enum Stream {
    Ws(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
    Sse(reqwest::Response),
}

/// Runs client `index` until the run stops or it quits.
pub async fn run(shared: Arc<Shared>, index: usize, mut sends: mpsc::Receiver<u64>) {
    let mut stop = shared.stop.clone();
    let mut last_position: Option<String> = None;
    let mut backoff = BACKOFF_FIRST;
    loop {
        if *stop.borrow() {
            return;
        }
        let (profile, transport, plan) = {
            let log = shared.log(index);
            (log.profile, log.transport, log.quit_plan)
        };
        let opened = tokio::time::timeout(
            CONNECT_TIMEOUT,
            open(&shared, index, profile, transport, last_position.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Err(("connect_timeout".to_owned(), None)));
        let ended = match opened {
            Ok((stream, ready, buffer)) => {
                backoff = BACKOFF_FIRST;
                shared.log(index).sessions.push(SessionLog {
                    opened_ms: now_ms(),
                    edge: ready["edge_id"].as_str().unwrap_or("?").to_owned(),
                    resumed: last_position.is_some(),
                    closed_ms: None,
                    end: None,
                });
                let ended = session(
                    &shared,
                    index,
                    (stream, buffer),
                    &mut sends,
                    &mut stop,
                    &mut last_position,
                )
                .await;
                if let Some(session) = shared.log(index).sessions.last_mut() {
                    session.closed_ms = Some(now_ms());
                    session.end = Some(ended.why.clone());
                }
                ended
            }
            Err((why, retry_after)) => {
                shared.log(index).connect_failures.push((now_ms(), why));
                let wait = retry_after.unwrap_or(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                sleep_or_stop(jitter(wait), &mut stop).await;
                continue;
            }
        };
        let quit = match plan {
            _ if ended.done && !*stop.borrow() => Some(QuitHow::Closed),
            Some(QuitPlan::VanishAfter(t)) if now_ms() >= t && !*stop.borrow() => {
                Some(QuitHow::Vanished)
            }
            _ => None,
        };
        if let Some(how) = quit {
            shared.log(index).quit = Some((now_ms(), how));
            return;
        }
        if ended.done {
            return;
        }
        sleep_or_stop(jitter(ended.after.unwrap_or(BACKOFF_FIRST)), &mut stop).await;
    }
}

/// `wait` and up to half as much again, so that clients cut at once do
/// not all come back in the same instant.
fn jitter(wait: Duration) -> Duration {
    wait + wait.mul_f64(rand::random::<f64>() / 2.0)
}

async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.changed() => {}
    }
}

/// Opens a stream and reads its first event, which must be `ready`; the
/// refusal otherwise (and how long it asked to wait).
async fn open(
    shared: &Shared,
    index: usize,
    profile: uuid::Uuid,
    transport: &str,
    last: Option<&str>,
) -> Result<(Stream, Value, String), (String, Option<Duration>)> {
    let token = shared.token(index);
    let mut stream = if transport == "ws" {
        let mut url = format!(
            "{}/live/{profile}/ws?token={token}",
            shared.url.replacen("http", "ws", 1)
        );
        if let Some(last) = last {
            url.push_str(&format!("&last_position={last}"));
        }
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => Stream::Ws(Box::new(ws)),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let code = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let retry = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map(Duration::from_secs);
                return Err((format!("http_{}_{code}", response.status().as_u16()), retry));
            }
            Err(err) => return Err((format!("ws_{}", short(&err.to_string())), None)),
        }
    } else {
        let mut request = shared
            .http
            .get(format!("{}/live/{profile}/sse", shared.url))
            .bearer_auth(&token)
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request
            .send()
            .await
            .map_err(|e| (crate::transport::http_error_kind(&e), None))?;
        if response.status() != 200 {
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Duration::from_secs);
            let body: Value = response.json().await.unwrap_or_default();
            let code = body["error"].as_str().unwrap_or_default();
            return Err((format!("http_{status}_{code}"), retry));
        }
        Stream::Sse(response)
    };
    let mut buffer = String::new();
    match next_event(&mut stream, &mut buffer).await {
        // Whatever came with it (SSE) stays in the buffer for the session.
        Some(first) if first["type"] == "ready" => Ok((stream, first, buffer)),
        Some(first) => Err((
            format!(
                "first_event_{}",
                first["code"]
                    .as_str()
                    .or(first["type"].as_str())
                    .unwrap_or("?")
            ),
            None,
        )),
        None => Err(("closed_before_ready".to_owned(), None)),
    }
}

/// The first words of an error, as a name to count.
fn short(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join("_")
        .to_lowercase()
}

/// The next JSON event of either kind of stream; `None` when it ends.
async fn next_event(stream: &mut Stream, buffer: &mut String) -> Option<Value> {
    match stream {
        Stream::Ws(ws) => loop {
            match ws.next().await? {
                Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        },
        Stream::Sse(response) => loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a comment: the heartbeat
                }
                return serde_json::from_str(&data.join("\n")).ok();
            }
            let chunk = response.chunk().await.ok()??;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        },
    }
}

/// Reads one session until it ends; sends what the sender hands over.
async fn session(
    shared: &Arc<Shared>,
    index: usize,
    (mut stream, mut buffer): (Stream, String),
    sends: &mut mpsc::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
    last_position: &mut Option<String>,
) -> Ended {
    let mut unanswered: HashSet<u64> = HashSet::new();
    let mut after = None;
    let (profile, plan) = {
        let log = shared.log(index);
        (log.profile, log.quit_plan)
    };
    let close_at = match plan {
        Some(QuitPlan::CloseAt(t)) => Duration::from_millis(t.saturating_sub(now_ms())),
        _ => Duration::MAX / 4,
    };
    let quit_timer = tokio::time::sleep(close_at);
    tokio::pin!(quit_timer);
    let ended = loop {
        tokio::select! {
            event = next_event(&mut stream, &mut buffer) => {
                let Some(event) = event else {
                    break Ended { why: "closed".into(), after, done: false };
                };
                if let Some(wait) = on_event(shared, index, &event, last_position, &mut unanswered) {
                    after = Some(wait);
                }
            }
            Some(key) = sends.recv() => match &mut stream {
                Stream::Ws(ws) => {
                    let frame = serde_json::json!({"type": "send", "body": body(key), "ref": key.to_string()});
                    if ws.send(Message::Text(frame.to_string().into())).await.is_ok() {
                        unanswered.insert(key);
                    } else {
                        shared.answer(key, Outcome::Unknown("ws_write_failed".into()));
                    }
                }
                Stream::Sse(_) => {
                    tokio::spawn(post(shared.clone(), index, profile, key));
                }
            },
            _ = &mut quit_timer => break Ended { why: "quit".into(), after: None, done: true },
            _ = stop.changed() => break Ended { why: "run_over".into(), after: None, done: true },
        }
    };
    if let Stream::Ws(ws) = &mut stream {
        let _ = futures_util::SinkExt::close(ws.as_mut()).await;
    }
    for key in unanswered {
        shared.answer(key, Outcome::Unknown("session_ended".into()));
    }
    ended
}

/// Records `event`; how long a `reconnect` asks to wait.
fn on_event(
    shared: &Shared,
    index: usize,
    event: &Value,
    last_position: &mut Option<String>,
    unanswered: &mut HashSet<u64>,
) -> Option<Duration> {
    let user = |e: &Value| e["user_id"].as_str().and_then(|u| u.parse().ok());
    let reference = || event["ref"].as_str().and_then(|r| r.parse::<u64>().ok());
    let mut log = shared.log(index);
    match event["type"].as_str().unwrap_or_default() {
        "message" => {
            let position = event["position"].as_str().unwrap_or_default();
            let offset = position.split('-').next().and_then(|o| o.parse().ok());
            let key = event["body"].as_str().and_then(key_of);
            if let (Some(key), Some(offset)) = (key, offset) {
                log.deliveries.push(Delivery {
                    at_ms: now_ms(),
                    key,
                    offset,
                });
            }
            *last_position = Some(position.to_owned());
        }
        "gap" => {
            let reason = event["reason"].as_str().unwrap_or("?").to_owned();
            log.gaps.push((now_ms(), reason));
        }
        "presence" => {
            log.presence = event["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(user_of)
                .collect();
        }
        "join" => {
            if let Some(user) = user(event) {
                log.presence.insert(user);
            }
        }
        "leave" => {
            if let Some(user) = user(event) {
                log.presence.remove(&user);
            }
        }
        "reconnect" => {
            let after = event["after_ms"].as_u64().unwrap_or(0);
            return Some(Duration::from_millis(after));
        }
        "ack" => {
            if let Some(key) = reference() {
                unanswered.remove(&key);
                drop(log);
                let id = event["id"].as_str().unwrap_or_default().to_owned();
                shared.answer(key, Outcome::Acked(id));
            }
        }
        "error" => {
            if let Some(key) = reference() {
                unanswered.remove(&key);
                drop(log);
                let code = event["code"].as_str().unwrap_or("?").to_owned();
                shared.answer(key, Outcome::Refused(code));
            }
        }
        _ => {}
    }
    None
}

fn user_of(value: &Value) -> Option<uuid::Uuid> {
    value.as_str().and_then(|u| u.parse().ok())
}

/// An SSE client's send: `POST /live/{profile}/messages` with its token.
async fn post(shared: Arc<Shared>, index: usize, profile: uuid::Uuid, key: u64) {
    let token = shared.token(index);
    let response = shared
        .http
        .post(format!("{}/live/{profile}/messages", shared.url))
        .bearer_auth(token)
        .json(&serde_json::json!({"body": body(key), "ref": key.to_string()}))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let outcome = match response {
        Ok(r) if r.status() == 200 => {
            let reply: Value = r.json().await.unwrap_or_default();
            Outcome::Acked(reply["id"].as_str().unwrap_or_default().to_owned())
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let reply: Value = r.json().await.unwrap_or_default();
            Outcome::Refused(format!(
                "http_{status}_{}",
                reply["error"].as_str().unwrap_or_default()
            ))
        }
        Err(err) => Outcome::Unknown(crate::transport::http_error_kind(&err)),
    };
    shared.answer(key, outcome);
}
