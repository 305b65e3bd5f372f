//! The broker stopped for 20 s under steady sends, then started again (a
//! Kafka of the test's own: the run's shared broker is never stopped).
//! Sends during the outage fail within `kafka.message_timeout_ms` (and a
//! margin) with a clear error, none hangs; the edge's `/readyz` says not
//! ready while it cannot reach Kafka and ready again after; every
//! acknowledged message is delivered once, in order, to a client that
//! stayed connected and to one that reconnected with its last position,
//! and is stored once; persist's committed offsets reach the end again.
//! Presence changes during the outage are not lost: the `leave` of a
//! session closed then, and the `join` and `leave` of one opened and closed
//! then, reach the client that stayed, in that order, once the broker is
//! back (no ghost); the one that left can open a session again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_domain::Position;
use rill_testkit::broker::Broker;
use rill_testkit::{Client, SseClient, Stack, WsClient};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(20);

/// The edges' `kafka.message_timeout_ms` here: shorter than the default
/// (10 s), so that a send fails sooner and more of them do.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a send may take beyond the message timeout on a busy machine.
const MARGIN: Duration = Duration::from_secs(5);

/// How long anything may take to come back once the broker is back.
const DEADLINE: Duration = Duration::from_secs(120);

/// How long the edge may take to deliver again once the broker is back.
/// Measured: about 10 s after the edge was ready again, the sequencer's
/// `transaction_timeout_ms`: the transaction open when the broker stopped
/// holds every read_committed reader back until the broker aborts it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(180);

/// Sends a WebSocket client keeps in flight at most, as a client with a
/// window would (below `limits.max_inflight_sends`: the edge reads each
/// send at once, so the time to its answer is the edge's).
const WINDOW: usize = 4;

/// How often the sender sends (when its window has room).
const SEND_EVERY: Duration = Duration::from_millis(100);

/// What became of one send.
#[derive(Debug, Clone)]
struct Outcome {
    /// Acknowledged: the message id; refused: the error code.
    result: Result<String, String>,
    /// From the send to its answer.
    took: Duration,
}

/// The sender's record: each send's outcome, by number.
type Outcomes = Arc<Mutex<BTreeMap<u64, Outcome>>>;

/// Sends over `ws` every [`SEND_EVERY`] (at most [`WINDOW`] unanswered)
/// until `stop` turns true, then waits for the last answers.
fn sender(
    mut ws: WsClient,
    stop: watch::Receiver<bool>,
) -> (Outcomes, tokio::task::JoinHandle<()>) {
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    let task = tokio::spawn(async move {
        let mut pending: BTreeMap<u64, Instant> = BTreeMap::new();
        let mut next = 0u64;
        let mut tick = tokio::time::interval(SEND_EVERY);
        loop {
            let stopping = *stop.borrow();
            if stopping && pending.is_empty() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if !stopping && pending.len() < WINDOW {
                        let frame = json!({"type": "send", "body": format!("m{next}"), "ref": next.to_string()});
                        ws.send(&frame).await;
                        pending.insert(next, Instant::now());
                        next += 1;
                    }
                    if let Some((n, since)) = pending.first_key_value() {
                        assert!(
                            since.elapsed() < MESSAGE_TIMEOUT + MARGIN * 2,
                            "send {n} unanswered after {:?}: it hangs",
                            since.elapsed()
                        );
                    }
                }
                event = ws.next_event() => {
                    let kind = event["type"].as_str().unwrap_or_default();
                    if kind != "ack" && kind != "error" {
                        continue;
                    }
                    let n: u64 = event["ref"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or_else(|| panic!("an answer without our ref: {event}"));
                    let since = pending.remove(&n).expect("an answer to a send in flight");
                    let result = match kind {
                        "ack" => Ok(event["id"].as_str().expect("an id").to_owned()),
                        _ => Err(event["code"].as_str().unwrap_or("?").to_owned()),
                    };
                    let outcome = Outcome { result, took: since.elapsed() };
                    record.lock().expect("outcomes").insert(n, outcome);
                }
            }
        }
    });
    (outcomes, task)
}

/// Messages a client received, in order: (position, id).
type Seen = Arc<Mutex<Vec<(Position, String)>>>;

/// Presence events a client received, in order: ("join" or "leave", user).
type Presence = Arc<Mutex<Vec<(String, String)>>>;

/// Records `event` in `seen` if it is a message; no gap is expected.
fn record(seen: &Seen, event: &Value, who: &str) {
    match event["type"].as_str() {
        Some("message") => {
            let position = event["position"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .expect("a valid position");
            let id = event["id"].as_str().expect("an id").to_owned();
            seen.lock().expect("seen").push((position, id));
        }
        Some("gap") => panic!("{who}: a gap: {event}"),
        _ => {}
    }
}

/// Reads a WebSocket that stays open through the outage, until `stop`:
/// its messages and its presence events.
fn ws_reader(
    mut ws: WsClient,
    mut stop: watch::Receiver<bool>,
) -> (Seen, Presence, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let presence = Presence::default();
    let (into, presence_into) = (seen.clone(), presence.clone());
    let task = tokio::spawn(async move {
        loop {
            // The client reads whatever comes; the select only lets it
            // stop (and never waits on one read long enough to time out).
            tokio::select! {
                _ = stop.changed() => return,
                event = ws.next_or_close() => match event {
                    Ok(event) => {
                        record(&into, &event, "WebSocket");
                        if let kind @ ("join" | "leave") = event["type"].as_str().unwrap_or_default() {
                            let user = event["user_id"].as_str().unwrap_or_default().to_owned();
                            presence_into.lock().expect("presence").push((kind.to_owned(), user));
                        }
                    }
                    Err(close) => panic!("the WebSocket that stayed ended: {close:?}"),
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    (seen, presence, task)
}

/// The presence events `presence` holds about `user`, in order, once the
/// last is a `leave`.
async fn until_left(presence: &Presence, user: Uuid) -> Vec<String> {
    let user = user.to_string();
    let since = Instant::now();
    loop {
        let kinds: Vec<String> = presence
            .lock()
            .expect("presence")
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(kind, _)| kind.clone())
            .collect();
        if kinds.last().is_some_and(|kind| kind == "leave") {
            return kinds;
        }
        assert!(
            since.elapsed() < DELIVERY_DEADLINE,
            "user {user} is still listed as live (a ghost): its events {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads an SSE stream until `stop`; the stream is dropped then.
fn sse_reader(
    mut sse: SseClient,
    seen: Seen,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                event = sse.next_or_end() => match event {
                    Some(event) => record(&seen, &event.data, "SSE"),
                    None => panic!("the SSE stream ended by itself"),
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

/// Polls `/readyz` of `client`'s edge until it answers `status` (within
/// `deadline` of `since`); when.
async fn readyz_until(
    client: &Client,
    status: u16,
    since: Instant,
    deadline: Duration,
) -> Duration {
    loop {
        if client.get("/readyz").await.status() == status {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < deadline,
            "/readyz did not answer {status} within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `seen` holds every id of `expected`; how long it took.
async fn until_seen(seen: &Seen, expected: &BTreeSet<String>, who: &str) -> Duration {
    let since = Instant::now();
    loop {
        let have: BTreeSet<String> = seen
            .lock()
            .expect("seen")
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        let missing = expected.difference(&have).count();
        if missing == 0 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DELIVERY_DEADLINE,
            "{who}: {missing} acknowledged messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message at most once, positions increasing, and every one of
/// `acked` there; the refused ones that arrived anyway (Kafka may have
/// written a message whose answer was lost) are returned.
fn assert_exactly_once_in_order(
    seen: &[(Position, String)],
    acked: &BTreeSet<String>,
    who: &str,
) -> usize {
    let ids: BTreeSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), seen.len(), "{who}: a message delivered twice");
    for pair in seen.windows(2) {
        assert!(
            pair[0].0.offset < pair[1].0.offset,
            "{who}: out of order: {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{who}: acknowledged but not delivered: {missing:?}"
    );
    seen.len() - acked.len()
}

/// The profile's stored history (ids, oldest first) once it holds every
/// id of `expected`; past [`DELIVERY_DEADLINE`], panics with what persist
/// says of itself.
async fn history_with(
    api: &Client,
    persist: &Client,
    profile: Uuid,
    expected: &BTreeSet<String>,
) -> Vec<String> {
    let since = Instant::now();
    loop {
        let response = api
            .get(&format!("/api/profiles/{profile}/messages?limit=200"))
            .await;
        let status = response.status();
        if status == 200 {
            let page: Value = response.json().await.expect("history page");
            let mut ids: Vec<String> = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
            ids.reverse();
            if expected.iter().all(|id| ids.contains(id)) {
                eprintln!(
                    "history held every acknowledged message after {:?} more",
                    since.elapsed()
                );
                return ids;
            }
        }
        if since.elapsed() >= DELIVERY_DEADLINE {
            let written = persist.metric("rill_persist_messages_written").await;
            let failures = persist.metric("rill_persist_write_failures").await;
            let lag = persist.metric("rill_persist_consumer_lag").await;
            panic!(
                "history still lacks acknowledged messages after {DELIVERY_DEADLINE:?} (history answered {status}); persist: {written} messages written, {failures} failed writes, consumer lag {lag}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_fails_sends_in_time_and_loses_nothing_acknowledged() {
    let broker = Broker::dedicated().await;
    let mut stack = Stack::start_on_broker(broker, 1, |settings| {
        settings.kafka.message_timeout_ms = MESSAGE_TIMEOUT;
        settings.availability.kafka_unreachable_ms = Duration::from_secs(3);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let edge = stack.edge_client(0);
    let member = async || {
        let client = stack.edge_client(0);
        let user = stack.member_of(&[room]).await;
        client.login(user).await;
        (client, user)
    };
    let ((sending, _), (staying, _), (resuming, _)) =
        (member().await, member().await, member().await);
    // Leaves during the outage; opens and leaves during it.
    let ((leaving, leaver), (visiting, visitor)) = (member().await, member().await);
    let (stop_tx, stop) = watch::channel(false);

    let mut staying_ws = staying.ws(room).await;
    staying_ws.next_of_type("ready").await;
    let (stop_stayed_tx, stop_stayed) = watch::channel(false);
    let (stayed, presence, stayed_task) = ws_reader(staying_ws, stop_stayed);
    let mut leaving_ws = leaving.ws(room).await;
    leaving_ws.next_of_type("ready").await;
    let resumed = Seen::default();
    let (cut_tx, cut) = watch::channel(false);
    let first_sse = sse_reader(resuming.sse(room).await, resumed.clone(), cut);
    let mut sender_ws = sending.ws(room).await;
    sender_ws.next_of_type("ready").await;
    let (outcomes, sender_task) = sender(sender_ws, stop.clone());
    let acked_count = || {
        outcomes
            .lock()
            .expect("outcomes")
            .values()
            .filter(|o| o.result.is_ok())
            .count()
    };

    // Steady sends first.
    let since = Instant::now();
    while acked_count() < 20 {
        assert!(
            since.elapsed() < DEADLINE,
            "no steady sends before the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stopped_at = Instant::now();
    let sent_before_outage = outcomes.lock().expect("outcomes").len();
    tokio::task::block_in_place(|| stack.broker.stop());
    let not_ready_after = readyz_until(&edge, 503, stopped_at, OUTAGE).await;
    // The SSE client leaves during the outage; it comes back after.
    cut_tx.send(true).expect("cut");
    first_sse.await.expect("first SSE reader");
    // One session closes, another opens and closes: their presence
    // changes cannot reach Kafka now, and are sent again until they do.
    drop(leaving_ws);
    let mut visiting_ws = visiting.ws(room).await;
    visiting_ws.next_of_type("ready").await;
    drop(visiting_ws);
    // A POST send during the outage: a 503 with a code, in time.
    let posted = Instant::now();
    let response = sending
        .post_json(
            &format!("/live/{room}/messages"),
            &json!({"body": "during"}),
        )
        .await;
    let post_took = posted.elapsed();
    let post_status = response.status().as_u16();
    let post_body: Value = response.json().await.unwrap_or_default();
    let retries_since = Instant::now();
    while edge.metric("rill_edge_presence_retries").await < 2.0 {
        assert!(
            retries_since.elapsed() < DEADLINE,
            "the presence changes of the outage were not refused and retried"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let down_for = OUTAGE.saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(down_for).await; // the outage itself, not a wait for a condition

    let restarting = Instant::now();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(stack.broker.restart())
    });
    let back_after = stopped_at.elapsed();
    let ready_after = readyz_until(&edge, 200, restarting, DEADLINE).await;

    // Steady sends after: 20 more acknowledged.
    let before = acked_count();
    let since = Instant::now();
    while acked_count() < before + 20 {
        assert!(
            since.elapsed() < DEADLINE,
            "sends are not acknowledged again after the broker returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).expect("stop");
    sender_task.await.expect("the sender");
    let sent_after = restarting.elapsed() - ready_after;

    let outcomes = outcomes.lock().expect("outcomes").clone();
    let acked: BTreeSet<String> = outcomes
        .values()
        .filter_map(|o| o.result.clone().ok())
        .collect();
    let refused: Vec<(&u64, &Outcome)> =
        outcomes.iter().filter(|(_, o)| o.result.is_err()).collect();
    let slowest = outcomes.values().map(|o| o.took).max().unwrap_or_default();
    let slowest_refusal = refused
        .iter()
        .map(|(_, o)| o.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "sends: {} ({} before the outage), {} acknowledged, {} refused; slowest answer {slowest:?}, slowest refusal {slowest_refusal:?}; \
         POST during the outage: {post_status} {post_body} in {post_took:?}; not ready {not_ready_after:?} after the stop, \
         broker back {back_after:?} after it, edge ready {ready_after:?} after the restart began",
        outcomes.len(),
        sent_before_outage,
        acked.len(),
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "no send failed while the broker was down"
    );
    for (n, outcome) in &refused {
        assert_eq!(
            outcome.result.as_ref().expect_err("refused"),
            "unavailable",
            "send {n}: the refusal's code"
        );
    }
    assert!(
        slowest < MESSAGE_TIMEOUT + MARGIN,
        "a send took {slowest:?}: more than the message timeout and a margin"
    );
    assert_eq!(
        post_status, 503,
        "a POST send during the outage: {post_body}"
    );
    assert_eq!(post_body["error"], "unavailable");
    assert!(
        post_took < MESSAGE_TIMEOUT + MARGIN,
        "the POST took {post_took:?}"
    );

    // The client that stayed gets every acknowledged message, once, in order.
    let delivered_after = sent_after + until_seen(&stayed, &acked, "the client that stayed").await;
    eprintln!(
        "the client that stayed had every acknowledged message {delivered_after:?} after the edge was ready again"
    );
    // The one that left comes back with its last position.
    let last = resumed
        .lock()
        .expect("seen")
        .last()
        .map(|(p, _)| p.to_string());
    let last = last.expect("the SSE client saw messages before the outage");
    // Its lock is held until its `leave` is in Kafka: "already live"
    // (409) until then, as for any client that comes back that fast.
    let since = Instant::now();
    let sse = loop {
        match resuming
            .try_sse(&format!("/live/{room}/sse"), &[("last-event-id", &last)])
            .await
        {
            Ok(sse) => break sse,
            Err((409, _)) if since.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err((status, body)) => panic!("the SSE client cannot come back: {status} {body}"),
        }
    };
    let (stop_sse_tx, stop_sse) = watch::channel(false);
    let second_sse = sse_reader(sse, resumed.clone(), stop_sse);
    until_seen(&resumed, &acked, "the client that came back").await;
    stop_sse_tx.send(true).expect("stop SSE");
    second_sse.await.expect("second SSE reader");
    // No ghost: the leave of the session closed during the outage, and
    // the join then the leave of the one that opened and closed then.
    let leaver_events = until_left(&presence, leaver).await;
    assert_eq!(
        leaver_events,
        ["join", "leave"],
        "the presence events of the session closed during the outage"
    );
    let visitor_events = until_left(&presence, visitor).await;
    assert_eq!(
        visitor_events,
        ["join", "leave"],
        "the presence events of the session opened and closed during the outage"
    );
    // Its lock was released once its leave was in Kafka.
    let mut back = leaving.ws(room).await;
    back.next_of_type("ready").await;
    stop_stayed_tx.send(true).expect("stop the reader");
    stayed_task
        .await
        .expect("the reader of the client that stayed");

    let stayed = stayed.lock().expect("seen").clone();
    let resumed = resumed.lock().expect("seen").clone();
    let extra_stayed = assert_exactly_once_in_order(&stayed, &acked, "the client that stayed");
    let extra_resumed = assert_exactly_once_in_order(&resumed, &acked, "the client that came back");
    eprintln!(
        "refused sends delivered anyway: {extra_stayed} (stayed), {extra_resumed} (came back)"
    );
    assert_eq!(
        stayed, resumed,
        "both clients saw the same messages at the same positions"
    );

    // Stored once each, in the same order; persist committed up to the end.
    let api =
        Client::new(&format!("http://{}", stack.api)).with_api_key(rill_testkit::TEST_API_KEY);
    let persist = Client::new(&format!("http://{}", stack.persist));
    let history = history_with(&api, &persist, room, &acked).await;
    let delivered: Vec<String> = stayed.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        history, delivered,
        "history holds what was delivered, once, in order"
    );
    // Persist committed again: its lag (records past its committed
    // offsets) is back to at most the sequencer's last commit marker in
    // each partition (a marker is not a record persist reads, so it is
    // never committed past); stuck, it would hold every message sent after
    // the outage.
    let most = f64::from(rill_testkit::broker::TEST_PARTITIONS);
    let since = Instant::now();
    loop {
        let lag = persist.metric("rill_persist_consumer_lag").await;
        if lag <= most {
            break;
        }
        assert!(
            since.elapsed() < DEADLINE,
            "persist's committed offsets stay {lag} records behind"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
