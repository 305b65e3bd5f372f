//! Redis away for 20 s under live sessions on two edges: killed and
//! started again empty (a Redis without persistence), or paused (SIGSTOP:
//! it comes back with its data, every heartbeat expired). No live session
//! ends because of it: each keeps receiving what is sent meanwhile, and
//! nobody gets a `leave` or `reconnect`. New sessions get 503
//! `locks_unavailable` with `Retry-After` while Redis is away; once it is
//! back they open, and the locks hold again: the live sessions' locks are
//! re-established (their registry entries too), so a second session of a
//! live pair is refused (4409), as is a second session of a new pair.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_testkit::{Client, Stack, WsClient, test_token};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long Redis stays away: below `redis.session_ttl_secs` (30 s), past
/// which an edge that could not reach Redis takes its sessions for lost.
const OUTAGE: Duration = Duration::from_secs(20);

/// How long anything may take to come back on a busy machine (the
/// locks' refresh runs every ttl / 3, 10 s).
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL, then a new, empty server on the same port.
    Restart,
    /// SIGSTOP, then SIGCONT: the data stays, the clock went on.
    Pause,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_ends_no_live_session() {
    redis_away(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_ends_no_live_session() {
    redis_away(Fault::Pause).await;
}

/// The events a live session received.
type Events = Arc<Mutex<Vec<Value>>>;

/// Reads `ws` into `events` until the test ends; panics if the session
/// ends.
fn reader(mut ws: WsClient, who: &'static str) -> (Events, tokio::task::JoinHandle<()>) {
    let events = Events::default();
    let into = events.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = ws.next_or_close() => match event {
                    Ok(event) => into.lock().expect("events").push(event),
                    Err(close) => panic!("{who}'s live session ended: {close:?}"),
                },
                // Never one read long enough to time out: the outage is
                // quiet for a reader.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    (events, task)
}

fn message_ids(events: &Events) -> BTreeSet<String> {
    events
        .lock()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "message")
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// A client of `user` on edge `url` with a connection token: no login in
/// Redis (a cookie's login is in Redis, which a restart empties).
fn token_client(url: &str, user: Uuid) -> Client {
    Client::new(url).with_token(&test_token(user))
}

/// A WebSocket of `client` on `room`: its first event, or the refusal.
async fn open(client: &Client, room: Uuid) -> Result<(WsClient, Value), String> {
    let mut ws = client
        .try_ws(&format!("/live/{room}/ws"), &[])
        .await
        .map_err(|(status, body)| format!("{status} {body}"))?;
    match ws.next_or_close().await {
        Ok(event) => Ok((ws, event)),
        Err(close) => Err(format!("closed: {close:?}")),
    }
}

/// Opens a WebSocket of `client` on `room` as soon as Redis answers the
/// edge again (503 until then); the session and how long after `since`.
async fn open_once_back(client: &Client, room: Uuid, since: Instant) -> (WsClient, Duration) {
    loop {
        match open(client, room).await {
            Ok((ws, first)) if first["type"] == "ready" => return (ws, since.elapsed()),
            Ok((_, first)) => panic!("refused after the upgrade: {first}"),
            Err(refused) => {
                assert!(
                    since.elapsed() < DEADLINE,
                    "new sessions still refused after Redis came back: {refused}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sends `body` over the sender's POST path; its id once acknowledged.
async fn send(client: &Client, room: Uuid, body: &str) -> String {
    let response = client
        .post_json(&format!("/live/{room}/messages"), &json!({ "body": body }))
        .await;
    let status = response.status();
    let reply: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "a send needs only Kafka: {reply}");
    reply["id"].as_str().expect("id").to_owned()
}

async fn redis_away(fault: Fault) {
    let mut stack = Stack::start(2).await;
    let room = stack.create_profile("Room").await;
    let (ada, grace, sender) = (
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
    );
    // Users who open their first sessions after the outage.
    let (newcomer, latecomer, observer) = (
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
    );
    let urls = [stack.edges[0].url(), stack.edges[1].url()];
    // Ada on the first edge, Grace on the second, with cookies (as a
    // browser): their sessions opened before the outage.
    let ada_client = stack.edge_client(0);
    ada_client.login(ada).await;
    let grace_client = stack.edge_client(1);
    grace_client.login(grace).await;
    let mut ada_ws = ada_client.ws(room).await;
    ada_ws.next_of_type("ready").await;
    let mut grace_ws = grace_client.ws(room).await;
    grace_ws.next_of_type("ready").await;
    let (ada_events, ada_task) = reader(ada_ws, "Ada");
    let (grace_events, grace_task) = reader(grace_ws, "Grace");
    let sending = token_client(&urls[0], sender);
    let mut sent = BTreeSet::from([send(&sending, room, "before").await]);

    let away_at = Instant::now();
    match fault {
        Fault::Restart => stack.redis.kill(),
        Fault::Pause => stack.redis.process.pause(),
    }

    // While Redis is away: sends go on; new sessions are refused with
    // 503 locks_unavailable and Retry-After, in bounded time.
    let newcomer_on = |edge: usize| token_client(&urls[edge], newcomer);
    let mut refusals = 0;
    while away_at.elapsed() < OUTAGE {
        sent.insert(send(&sending, room, &format!("during {refusals}")).await);
        let asked = Instant::now();
        let response = newcomer_on(refusals % 2)
            .get(&format!("/live/{room}/sse"))
            .await;
        let took = asked.elapsed();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 503, "a new session while Redis is away: {body}");
        assert_eq!(body["error"], "locks_unavailable", "{body}");
        assert!(retry_after.is_some(), "503 without Retry-After");
        assert!(took < Duration::from_secs(5), "the refusal took {took:?}");
        let ws = newcomer_on(refusals % 2)
            .try_ws(&format!("/live/{room}/ws"), &[])
            .await;
        assert!(
            matches!(&ws, Err((503, body)) if body.contains("locks_unavailable")),
            "a WebSocket while Redis is away: {:?}",
            ws.as_ref().err()
        );
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    match fault {
        Fault::Restart => tokio::task::block_in_place(|| stack.redis.start_again()),
        Fault::Pause => stack.redis.process.resume(),
    }
    let back_at = Instant::now();

    // New sessions open again on both edges (each reconnects to Redis with
    // its next command: a 503 until then), and their locks hold: a second
    // session of the pair is refused.
    let (newcomer_ws, opened) = open_once_back(&newcomer_on(1), room, back_at).await;
    let (latecomer_ws, _) = open_once_back(&token_client(&urls[0], latecomer), room, back_at).await;
    let (mut second, first) = open(&newcomer_on(0), room)
        .await
        .expect("the upgrade (a second session is refused after it)");
    assert_eq!(first["code"], "already_live", "{first}");
    assert!(
        matches!(second.closed().await, Some(frame) if u16::from(frame.code) == 4409),
        "a second session is closed with 4409"
    );

    // The live sessions' locks are back: their registry entries first
    // (the refresh re-adds them with the lock), then a second session of
    // Ada's pair is refused.
    let api = stack.server();
    for (who, user) in [("Ada", ada), ("Grace", grace)] {
        loop {
            let response = api.get(&format!("/api/users/{user}/launched")).await;
            let page: Value = response.json().await.unwrap_or_default();
            let live = page["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|p| p == &json!(room.to_string())));
            if live {
                break;
            }
            assert!(
                back_at.elapsed() < DEADLINE,
                "{who}'s session is not in the registry again: {page}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let (mut again, first) = open(&token_client(&urls[1], ada), room)
        .await
        .expect("the upgrade");
    assert_eq!(
        first["code"], "already_live",
        "a second session of a live pair after Redis came back: {first}"
    );
    again.closed().await;

    // Everything sent during and after reaches both live sessions.
    sent.insert(send(&sending, room, "after").await);
    for (who, events) in [("Ada", &ada_events), ("Grace", &grace_events)] {
        loop {
            let missing = sent.difference(&message_ids(events)).count();
            if missing == 0 {
                break;
            }
            assert!(
                back_at.elapsed() < DEADLINE,
                "{who} never got {missing} messages sent while Redis was away or after"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Nobody was told to go, and nobody left (a survivor that took an
    // edge for dead would have published leaves for its sessions).
    for (who, events) in [("Ada", &ada_events), ("Grace", &grace_events)] {
        let events = events.lock().expect("events");
        let bad: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "reconnect" || e["type"] == "leave")
            .collect();
        assert!(bad.is_empty(), "{who} got {bad:?}");
    }
    // Whoever opens a session now sees them live.
    let (mut observer, _) = open(&token_client(&urls[0], observer), room)
        .await
        .expect("an observer's session");
    let snapshot = observer.next_of_type("presence").await;
    let live: BTreeSet<String> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    for (who, user) in [("Ada", ada), ("Grace", grace)] {
        assert!(
            live.contains(&user.to_string()),
            "{who} is live but not listed: {live:?}"
        );
    }
    eprintln!(
        "{fault:?}: {refusals} refusals while away; a new session opened {opened:?} after Redis came back"
    );
    ada_task.abort();
    grace_task.abort();
    drop((newcomer_ws, latecomer_ws, observer));
}
