//! Dead edges, with edges as real processes: the sessions of an edge
//! killed with `kill -9` are ended by a survivor within seconds (their
//! `leave`s published, their locks and registry entries freed), so its
//! clients stream again on another edge and nobody lists them as live;
//! an edge that was only paused (SIGSTOP) past `edges.dead_after_ms` ends
//! its old sessions when it wakes and leaves the newer ones alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rill_testkit::service::ServiceProcess;
use rill_testkit::{Client, Stack, WsClient, auth_env};
use serde_json::{Value, json};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_edge");

/// Generous: the aim is 5 s (docs/ARCHITECTURE.md gives the bound); a busy
/// machine may take longer, a broken one never gets there.
const DEADLINE: Duration = Duration::from_secs(20);

/// An edge process named `name` on the stack's broker, store and Redis,
/// with the default `edges.*` settings.
fn edge_process(stack: &Stack, name: &str) -> ServiceProcess {
    let mut env = stack.broker.env();
    env.extend(stack.store.env());
    env.extend([
        ("RILL_NODE_ID", name.to_owned()),
        ("RILL_REDIS__URLS", stack.redis.url()),
    ]);
    env.extend(auth_env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start(Path::new(BINARY), &env)
}

/// A logged-in client of `user` on the edge at `url`.
async fn client(url: &str, user: Uuid) -> Client {
    let client = Client::new(url);
    client.login(user).await;
    client
}

/// Opens a WebSocket on `room` and reads its `ready`; the refusal's first
/// event (an `already_live` error, say) otherwise.
async fn open(client: &Client, room: Uuid) -> Result<WsClient, String> {
    let mut ws = client
        .try_ws(&format!("/live/{room}/ws"), &[])
        .await
        .map_err(|(status, body)| format!("{status} {body}"))?;
    match ws.next_or_close().await {
        Ok(event) if event["type"] == "ready" => Ok(ws),
        Ok(event) => Err(event.to_string()),
        Err(close) => Err(format!("closed: {close:?}")),
    }
}

/// Opens a WebSocket on `room` as soon as the edge lets it (the pair's
/// old lock freed), trying again every 100 ms until [`DEADLINE`]; how long
/// after `since` it opened.
async fn open_when_free(client: &Client, room: Uuid, since: Instant) -> (WsClient, Duration) {
    loop {
        match open(client, room).await {
            Ok(ws) => return (ws, since.elapsed()),
            Err(refused) => {
                assert!(
                    since.elapsed() < DEADLINE,
                    "still refused after {DEADLINE:?}: {refused}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The users of the `presence` event a session opened with.
async fn snapshot(ws: &mut WsClient) -> BTreeSet<String> {
    ws.next_of_type("presence").await["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u.as_str().expect("id").to_owned())
        .collect()
}

async fn launched(stack: &Stack, user: Uuid) -> Vec<Value> {
    let body: Value = stack
        .server()
        .get(&format!("/api/users/{user}/launched"))
        .await
        .json()
        .await
        .expect("json");
    body["items"].as_array().expect("items").clone()
}

/// Posts a message to `room` through `sender` every 100 ms until aborted.
fn send_steadily(sender: Client, room: Uuid) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0.. {
            let sent = sender
                .post_json(
                    &format!("/live/{room}/messages"),
                    &json!({ "body": format!("steady {n}") }),
                )
                .await;
            assert_eq!(sent.status(), 200, "sends go on through the survivor");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_of_a_killed_edge_end_within_seconds_and_nobody_lists_them() {
    let stack = Stack::start(1).await;
    let mut doomed = edge_process(&stack, "edge-doomed");
    let survivor = edge_process(&stack, "edge-survivor");
    let room = stack.create_profile("Room").await;

    // Three users on each edge; the survivor's first one watches presence.
    let mut on_doomed = Vec::new();
    for _ in 0..3 {
        let user = stack.member_of(&[room]).await;
        let ws = open(&client(&doomed.url(), user).await, room)
            .await
            .expect("opens");
        on_doomed.push((user, ws));
    }
    let mut on_survivor = Vec::new();
    for _ in 0..3 {
        let user = stack.member_of(&[room]).await;
        let ws = open(&client(&survivor.url(), user).await, room)
            .await
            .expect("opens");
        on_survivor.push((user, ws));
    }
    let everyone: BTreeSet<String> = on_doomed
        .iter()
        .chain(&on_survivor)
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(snapshot(&mut on_survivor[2].1).await, everyone);
    let sender = client(&survivor.url(), stack.member_of(&[room]).await).await;
    let sends = send_steadily(sender, room);
    let mut witness = on_survivor.remove(0).1;
    witness.next_of_type("message").await;

    doomed.process.kill(); // kill -9, under steady sends
    let killed = Instant::now();
    let gone: Vec<Uuid> = on_doomed.drain(..).map(|(user, _)| user).collect();
    // Two of its clients come back on the survivor at once, trying until
    // their old locks are freed; the third never comes back.
    let mut reconnects = tokio::task::JoinSet::new();
    for &user in &gone[..2] {
        let url = survivor.url();
        reconnects.spawn(async move {
            let client = client(&url, user).await;
            let (ws, after) = open_when_free(&client, room, killed).await;
            (user, ws, after)
        });
    }

    // The witness gets a leave for each dead session, and the returning
    // users' joins only after their leaves.
    let mut seen: BTreeMap<String, Vec<(String, Duration)>> = BTreeMap::new();
    let returned: BTreeSet<String> = gone[..2].iter().map(Uuid::to_string).collect();
    let done = |seen: &BTreeMap<String, Vec<(String, Duration)>>| {
        gone.iter().all(|user| {
            let events = seen.get(&user.to_string()).map_or(&[][..], Vec::as_slice);
            let left = events.iter().position(|(kind, _)| kind == "leave");
            match left {
                None => false,
                Some(at) if returned.contains(&user.to_string()) => {
                    events[at..].iter().any(|(kind, _)| kind == "join")
                }
                Some(_) => true,
            }
        })
    };
    while !done(&seen) {
        assert!(
            killed.elapsed() < DEADLINE,
            "presence after {DEADLINE:?}: {seen:?}"
        );
        let event = witness.next_event().await;
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "join" || kind == "leave" {
            let user = event["user_id"].as_str().expect("user id").to_owned();
            seen.entry(user)
                .or_default()
                .push((kind.to_owned(), killed.elapsed()));
        }
    }
    let mut back = Vec::new();
    while let Some(reconnected) = reconnects.join_next().await {
        back.push(reconnected.expect("reconnect task"));
    }
    sends.abort();
    let leaves: Vec<Duration> = gone
        .iter()
        .filter_map(|u| seen[&u.to_string()].iter().find(|(k, _)| k == "leave"))
        .map(|(_, at)| *at)
        .collect();
    let reconnected: Vec<Duration> = back.iter().map(|(_, _, after)| *after).collect();
    println!(
        "after kill -9: leaves seen at {leaves:?}; clients streaming again at {reconnected:?}"
    );
    for (user, ws, _) in &mut back {
        assert_eq!(
            ws.next_of_type("presence").await["users"][0],
            user.to_string(),
            "back on the survivor"
        );
    }

    // No ghost: a new session's snapshot lists who is live, not the user
    // who never came back; nor does the registry; and that user's lock
    // is free (the pair opens at once).
    let newcomer = stack.member_of(&[room]).await;
    let mut fresh = open(&client(&survivor.url(), newcomer).await, room)
        .await
        .expect("opens");
    let listed = snapshot(&mut fresh).await;
    let mut expected: BTreeSet<String> = everyone;
    expected.remove(&gone[2].to_string());
    expected.insert(newcomer.to_string());
    assert_eq!(listed, expected, "the dead session is not listed");
    assert!(launched(&stack, gone[2]).await.is_empty());
    assert_eq!(launched(&stack, gone[0]).await, [json!(room.to_string())]);
    open(&client(&survivor.url(), gone[2]).await, room)
        .await
        .expect("its lock was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_edge_ends_its_old_sessions_when_it_wakes_and_leaves_the_newer_ones_alone() {
    let stack = Stack::start(1).await;
    let paused = edge_process(&stack, "edge-paused");
    let other = edge_process(&stack, "edge-other");
    let room = stack.create_profile("Room").await;
    let (user, watcher) = (
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
    );
    let mut old = open(&client(&paused.url(), user).await, room)
        .await
        .expect("opens");
    let mut witness = open(&client(&other.url(), watcher).await, room)
        .await
        .expect("opens");
    assert!(snapshot(&mut witness).await.contains(&user.to_string()));

    paused.process.pause(); // SIGSTOP: its sockets stay open, nothing answers
    let stopped = Instant::now();
    let (mut newer, after) = open_when_free(&client(&other.url(), user).await, room, stopped).await;
    println!("the pair opened on the other edge {after:?} after the pause");
    loop {
        let event = witness.next_of_type("leave").await;
        if event["user_id"] == user.to_string() {
            break;
        }
    }
    loop {
        let event = witness.next_of_type("join").await;
        if event["user_id"] == user.to_string() {
            break;
        }
    }

    paused.process.resume(); // SIGCONT
    let reconnect = old.next_of_type("reconnect").await;
    assert_eq!(reconnect["reason"], "declared_dead", "{reconnect}");
    let close = old.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);

    // The newer session lives on: it gets what is sent now, and nobody got
    // a leave for it.
    let sender = client(&other.url(), watcher).await;
    let sent = sender
        .post_json(
            &format!("/live/{room}/messages"),
            &json!({ "body": "after the wake" }),
        )
        .await;
    assert_eq!(sent.status(), 200);
    assert_eq!(
        newer.next_of_type("message").await["body"],
        "after the wake"
    );
    loop {
        let event = witness.next_event().await;
        assert!(
            !(event["type"] == "leave" && event["user_id"] == user.to_string()),
            "a leave for the live session: {event}"
        );
        if event["type"] == "message" && event["body"] == "after the wake" {
            break;
        }
    }
    // Its lock and registry entry are intact: the pair is refused on the
    // woken edge (once it is ready again: the pause counts as event-loop
    // lag for a moment), and listed.
    let woken = Client::new(&paused.url());
    let since = Instant::now();
    while woken.get("/readyz").await.status() != 200 {
        assert!(since.elapsed() < DEADLINE, "the woken edge never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = client(&paused.url(), user)
        .await
        .try_sse(&format!("/live/{room}/sse"), &[])
        .await
        .expect_err("the pair is live on the other edge");
    assert_eq!(status, 409, "{body}");
    assert_eq!(launched(&stack, user).await, [json!(room.to_string())]);
    let mut fresh = open(
        &client(&other.url(), stack.member_of(&[room]).await).await,
        room,
    )
    .await
    .expect("opens");
    assert!(snapshot(&mut fresh).await.contains(&user.to_string()));

    // The woken edge goes on, as a new incarnation.
    let mut third = open(
        &client(&paused.url(), stack.member_of(&[room]).await).await,
        room,
    )
    .await
    .expect("the woken edge takes sessions");
    snapshot(&mut third).await;
    assert!(
        paused.process.log().contains("taken for dead"),
        "the woken edge says why its sessions ended"
    );
}
