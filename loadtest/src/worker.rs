//! A worker process (`rill-load worker`): reads its [`WorkerPlan`] from
//! stdin, opens its sessions at its share of the ramp, reports
//! `connected`, waits for `go`, sends at its share of the rate for the
//! duration, waits the drain time, and writes its [`WorkerResult`].
//! It stops by itself at the plan's deadline, or when stdin closes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{mpsc, watch};

use crate::intervals::{IntervalPlan, Intervals};
use crate::login::Logins;
use crate::plan::{GO, Progress, SessionPlan, Transport, WorkerMessage, WorkerPlan, WorkerResult};
use crate::stats::{Latency, now_us};
use crate::transport::{Conn, Event, http_error_kind};

/// Set once the result is written: stdin closing is then the normal end.
static RESULT_SENT: AtomicBool = AtomicBool::new(false);

/// Sends queued per WebSocket session before more count as errors.
const SEND_QUEUE: usize = 64;

/// A send: the message key (worker << 40 | seq) and its body.
#[derive(Debug)]
struct SendCmd {
    key: u64,
    body: String,
}

/// How the sender reaches a connected session.
#[derive(Debug, Clone)]
enum Sender {
    Queue(mpsc::Sender<SendCmd>),
    Post {
        http: reqwest::Client,
        url: String,
        cookie: String,
        /// The edge's own origin: a send with the cookie must come from
        /// a page of the site, as a browser's would.
        origin: String,
        profile: u32,
    },
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    attempts_done: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    disconnected: AtomicU64,
}

impl Counters {
    fn progress(&self) -> Progress {
        Progress {
            connected: self.connected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Shared {
    index: u32,
    counters: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<Latency>,
    /// Set at `go`, when the coordinator gives the intervals' start.
    latency_by_interval: Mutex<Option<Intervals>>,
    ack_latency: Mutex<Latency>,
    connect_latency: Mutex<Latency>,
    /// Live sessions per profile.
    live: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    senders: Mutex<Vec<Sender>>,
    /// `None` without a token key: the Socket.IO peer logs no one in.
    logins: Option<Logins>,
    http: Vec<reqwest::Client>,
    sources: Vec<Ipv4Addr>,
    /// Send times of WebSocket sends awaiting their ack, by key.
    sending: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    fn error(&self, kind: impl Into<String>) {
        *self
            .errors
            .lock()
            .expect("errors lock")
            .entry(kind.into())
            .or_default() += 1;
    }

    fn record_delivery(&self, body: &str, keys: &mut Vec<u64>) {
        let Some((key, sent_us)) = parse_body(body) else {
            return;
        };
        let latency_us = now_us().saturating_sub(sent_us);
        self.latency
            .lock()
            .expect("latency lock")
            .record_us(latency_us);
        if let Some(intervals) = self
            .latency_by_interval
            .lock()
            .expect("intervals lock")
            .as_mut()
        {
            intervals.record(sent_us, latency_us);
        }
        keys.push(key);
        self.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    fn record_ack(&self, key: u64, profile: u32) {
        let sent = self.sending.lock().expect("sending lock").remove(&key);
        if let Some(sent) = sent {
            self.ack_latency
                .lock()
                .expect("ack lock")
                .record_us(now_us().saturating_sub(sent));
            self.acked[profile as usize].fetch_add(1, Ordering::Relaxed);
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `lt:<key>:<send µs>:` and padding.
pub fn make_body(key: u64, sent_us: u64, bytes: usize) -> String {
    let mut body = format!("lt:{key}:{sent_us}:");
    while body.len() < bytes {
        body.push('x');
    }
    body
}

/// The origin (scheme, host, port) of `url`, as a browser sends it in
/// `Origin`.
fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

pub fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut parts = body.strip_prefix("lt:")?.split(':');
    let key = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((key, sent))
}

fn emit(message: &WorkerMessage) {
    let line = serde_json::to_string(message).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub async fn run() -> anyhow::Result<()> {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await?.context("no plan on stdin")?;
    let plan: WorkerPlan = serde_json::from_str(&line).context("bad plan")?;
    // `go` starts the sending; stdin closed (the coordinator is gone):
    // stop at once, in whatever phase.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<IntervalPlan>();
    let (more_tx, more_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut go_tx = Some(go_tx);
        let mut more_tx = Some(more_tx);
        loop {
            match stdin.next_line().await {
                Ok(Some(line)) if line.starts_with(GO) => {
                    let Ok(intervals) = serde_json::from_str(&line[GO.len()..]) else {
                        eprintln!("rill-load worker: a bad go line: {line:?}; stopping");
                        std::process::exit(3);
                    };
                    if let Some(tx) = go_tx.take() {
                        let _ = tx.send(intervals);
                    }
                }
                Ok(Some(line)) if line == "more" => {
                    if let Some(tx) = more_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Some(_)) => {}
                _ if RESULT_SENT.load(Ordering::Relaxed) => std::process::exit(0),
                _ => {
                    eprintln!("rill-load worker: the coordinator went away; stopping");
                    std::process::exit(3);
                }
            }
        }
    });
    let deadline = Duration::from_secs_f64(plan.deadline_secs);
    match tokio::time::timeout(deadline, work(plan, go_rx, more_rx)).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("worker deadline reached"),
    }
}

async fn work(
    plan: WorkerPlan,
    go: tokio::sync::oneshot::Receiver<IntervalPlan>,
    more: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let http = plan
        .source_ips
        .iter()
        .map(|ip| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(*ip))
                .tcp_nodelay(true)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let profiles = plan.profiles as usize;
    let shared = Arc::new(Shared {
        index: plan.index,
        counters: Counters::default(),
        errors: Mutex::default(),
        latency: Mutex::default(),
        latency_by_interval: Mutex::default(),
        ack_latency: Mutex::default(),
        connect_latency: Mutex::default(),
        live: (0..profiles).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..profiles).map(|_| AtomicU64::new(0)).collect(),
        senders: Mutex::default(),
        logins: plan
            .token_key
            .clone()
            .map(|key| Logins::new(key, plan.connect_timeout_secs)),
        http,
        sources: plan.source_ips.clone(),
        sending: Mutex::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                emit(&WorkerMessage::Progress(shared.counters.progress()));
            }
        })
    };

    // Connect, at this worker's share of the ramp.
    let total = plan.sessions.len() as u64;
    let half = if plan.pause_at_half { total / 2 } else { total };
    let mut more = Some(more);
    let mut started = Instant::now();
    let mut paced_from = 0usize;
    let mut tasks = Vec::with_capacity(plan.sessions.len());
    for (i, session) in plan.sessions.iter().cloned().enumerate() {
        if i as u64 == half
            && let Some(more) = more.take()
        {
            while shared.counters.attempts_done.load(Ordering::Relaxed) < half {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            emit(&WorkerMessage::Half(shared.counters.progress()));
            more.await.context("coordinator went away")?;
            started = Instant::now();
            paced_from = i;
        }
        let at = Duration::from_secs_f64((i - paced_from) as f64 / plan.ramp_per_sec.max(0.001));
        tokio::time::sleep_until((started + at).into()).await;
        let source = i % plan.source_ips.len();
        tasks.push(tokio::spawn(session_task(
            shared.clone(),
            session,
            source,
            stop_rx.clone(),
            Duration::from_secs_f64(plan.connect_timeout_secs),
        )));
    }
    while shared.counters.attempts_done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    emit(&WorkerMessage::Connected(shared.counters.progress()));

    // Wait for `go`: the coordinator's barrier.
    let intervals = go.await.context("coordinator went away")?;
    *shared.latency_by_interval.lock().expect("intervals lock") = Some(Intervals::new(intervals));
    let sessions_per_profile: Vec<u64> = shared
        .live
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    send_for(&shared, &plan).await;
    tokio::time::sleep(Duration::from_secs_f64(plan.drain_secs)).await;

    let _ = stop_tx.send(true);
    let mut unique = 0;
    let mut duplicates = 0;
    for task in tasks {
        if let Ok(mut keys) = task.await {
            keys.sort_unstable();
            let n = keys.len() as u64;
            keys.dedup();
            unique += keys.len() as u64;
            duplicates += n - keys.len() as u64;
        }
    }
    progress_task.abort();
    let unacked = shared.sending.lock().expect("sending lock").len() as u64;
    let result = WorkerResult {
        index: plan.index,
        progress: shared.counters.progress(),
        connect_secs,
        errors: shared.errors.lock().expect("errors lock").clone(),
        sessions_per_profile,
        acked_per_profile: shared
            .acked
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect(),
        unique_received: unique,
        duplicates,
        disconnected: shared.counters.disconnected.load(Ordering::Relaxed),
        latency: shared.latency.lock().expect("latency lock").data(),
        latency_by_interval: shared
            .latency_by_interval
            .lock()
            .expect("intervals lock")
            .as_ref()
            .map(Intervals::data)
            .unwrap_or_default(),
        ack_latency: shared.ack_latency.lock().expect("ack lock").data(),
        connect_latency: shared.connect_latency.lock().expect("lock").data(),
        unacked,
    };
    emit(&WorkerMessage::Result(Box::new(result)));
    RESULT_SENT.store(true, Ordering::Relaxed);
    Ok(())
}

/// Sends `plan.rate` messages per second for `plan.duration_secs`, round
/// robin over this worker's live sessions.
async fn send_for(shared: &Arc<Shared>, plan: &WorkerPlan) {
    let duration = Duration::from_secs_f64(plan.duration_secs);
    let start = Instant::now();
    if plan.rate <= 0.0 {
        tokio::time::sleep(duration).await;
        return;
    }
    let senders = shared.senders.lock().expect("senders lock").clone();
    if senders.is_empty() {
        shared.error("no_live_session_to_send_from");
        tokio::time::sleep(duration).await;
        return;
    }
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * plan.rate) as u64;
        while seq < due {
            let key = (u64::from(shared.index) << 40) | seq;
            let sender = &senders[(seq % senders.len() as u64) as usize];
            seq += 1;
            let sent_us = now_us();
            let body = make_body(key, sent_us, plan.body_bytes);
            shared.counters.sent.fetch_add(1, Ordering::Relaxed);
            match sender {
                Sender::Queue(queue) => {
                    shared
                        .sending
                        .lock()
                        .expect("sending lock")
                        .insert(key, sent_us);
                    if queue.try_send(SendCmd { key, body }).is_err() {
                        shared.sending.lock().expect("sending lock").remove(&key);
                        shared.error("send_queue_full_or_closed");
                    }
                }
                Sender::Post {
                    http,
                    url,
                    cookie,
                    origin,
                    profile,
                } => {
                    let (shared, http, url, cookie, origin, profile) = (
                        shared.clone(),
                        http.clone(),
                        url.clone(),
                        cookie.clone(),
                        origin.clone(),
                        *profile,
                    );
                    shared
                        .sending
                        .lock()
                        .expect("sending lock")
                        .insert(key, sent_us);
                    tokio::spawn(async move {
                        let response = http
                            .post(url)
                            .header("cookie", cookie)
                            .header("origin", origin)
                            .json(&serde_json::json!({"body": body, "ref": key.to_string()}))
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status().is_success() => shared.record_ack(key, profile),
                            Ok(r) => {
                                shared.sending.lock().expect("sending lock").remove(&key);
                                shared.error(format!("post_http_{}", r.status().as_u16()));
                            }
                            Err(e) => {
                                shared.sending.lock().expect("sending lock").remove(&key);
                                shared.error(format!("post_{}", http_error_kind(&e)));
                            }
                        }
                    });
                }
            }
        }
    }
}

/// One session: connect (login first for Rill), then read until stopped.
/// Returns the keys of the run's messages it received.
async fn session_task(
    shared: Arc<Shared>,
    session: SessionPlan,
    source: usize,
    mut stop: watch::Receiver<bool>,
    connect_timeout: Duration,
) -> Vec<u64> {
    let mut keys = Vec::new();
    let started = Instant::now();
    let connect = async {
        let http = &shared.http[source];
        let cookie = match (session.transport, &shared.logins) {
            (Transport::Socketio, _) => None,
            (_, Some(logins)) => Some(logins.cookie(http, &session.url, session.user_id).await?),
            (_, None) => return Err("login_without_token_key".to_owned()),
        };
        let mut conn = Conn::open(
            session.transport,
            &session.url,
            session.profile_id,
            session.user_id,
            cookie.as_deref(),
            shared.sources[source],
            http,
        )
        .await
        .map_err(|e| e.kind().to_owned())?;
        // Connected once the server says the session is ready.
        loop {
            match conn.next_event().await {
                Event::Ready => return Ok((conn, cookie)),
                Event::EnginePing => {
                    let _ = conn.pong().await;
                }
                Event::Closed { code } => {
                    return Err(format!("closed_before_ready_{}", code.unwrap_or(0)));
                }
                Event::Error { code } => return Err(format!("error_before_ready_{code}")),
                _ => continue,
            }
        }
    };
    let outcome = tokio::time::timeout(connect_timeout, connect).await;
    let (mut conn, cookie) = match outcome {
        Ok(Ok(ok)) => ok,
        failed => {
            shared.error(match failed {
                Ok(Err(kind)) => kind,
                _ => "connect_timeout".to_owned(),
            });
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            shared
                .counters
                .attempts_done
                .fetch_add(1, Ordering::Relaxed);
            return keys;
        }
    };
    shared
        .connect_latency
        .lock()
        .expect("lock")
        .record_us(started.elapsed().as_micros() as u64);
    let profile = session.profile;
    shared.live[profile as usize].fetch_add(1, Ordering::Relaxed);
    let (queue_tx, mut queue) = mpsc::channel::<SendCmd>(SEND_QUEUE);
    let sender = match session.transport {
        Transport::Sse => Sender::Post {
            http: shared.http[source].clone(),
            url: format!("{}/live/{}/messages", session.url, session.profile_id),
            cookie: cookie.unwrap_or_default(),
            origin: origin_of(&session.url),
            profile,
        },
        _ => Sender::Queue(queue_tx),
    };
    shared.senders.lock().expect("senders lock").push(sender);
    shared.counters.connected.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .attempts_done
        .fetch_add(1, Ordering::Relaxed);

    loop {
        tokio::select! {
            event = conn.next_event() => match event {
                Event::Message { body } => shared.record_delivery(&body, &mut keys),
                Event::Ack { reference } => {
                    if let Some(key) = reference.and_then(|r| r.parse().ok()) {
                        shared.record_ack(key, profile);
                    }
                }
                Event::Error { code } => shared.error(format!("event_error_{code}")),
                Event::EnginePing => {
                    if let Err(e) = conn.pong().await {
                        shared.error(e.kind().to_owned());
                    }
                }
                Event::Other(kind) if kind == "gap" => shared.error("gap"),
                Event::Other(kind) if kind == "reconnect" => shared.error("reconnect_asked"),
                Event::Ready | Event::Other(_) => {}
                Event::Closed { code } => {
                    shared.error(format!("closed_{}", code.unwrap_or(0)));
                    shared.counters.disconnected.fetch_add(1, Ordering::Relaxed);
                    shared.live[profile as usize].fetch_sub(1, Ordering::Relaxed);
                    return keys;
                }
            },
            Some(cmd) = queue.recv() => {
                if let Err(e) = conn.send(&cmd.body, &cmd.key.to_string()).await {
                    shared.sending.lock().expect("sending lock").remove(&cmd.key);
                    shared.error(e.kind().to_owned());
                }
            }
            _ = stop.changed() => break,
        }
    }
    conn.close().await;
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_key_and_time_and_have_the_asked_size() {
        let body = make_body(5 << 40 | 9, 1_700_000_000_000_000, 64);
        assert_eq!(body.len(), 64);
        assert_eq!(
            parse_body(&body),
            Some((5 << 40 | 9, 1_700_000_000_000_000))
        );
        assert_eq!(parse_body("hello"), None);
    }

    #[test]
    fn the_origin_of_a_url_is_its_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            origin_of("http://edge.example/base/"),
            "http://edge.example"
        );
        assert_eq!(
            origin_of("https://edge.example:443"),
            "https://edge.example"
        );
    }
}
