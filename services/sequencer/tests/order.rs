//! One order per profile, seen by plain clients (they drop nothing
//! themselves): two clients on two edges see the same order; a sequencer
//! killed mid-stream neither loses nor doubles a message; a position from
//! before the sequenced topic was recreated gets a `gap`, not a wrong
//! replay.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rill_domain::Position;
use rill_testkit::service::ServiceProcess;
use rill_testkit::stack::{edge_settings, start_edge};
use rill_testkit::{Client, SseClient, Stack, WsClient};
use serde_json::{Value, json};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_sequencer");

/// How long a receiver may take to get everything that was sent.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A sequencer process of `stack`'s own, with a stable transactional id.
fn sequencer(stack: &Stack) -> ServiceProcess {
    let mut env = stack.broker.env();
    env.extend([
        ("RILL_GROUP_ID", stack.broker.group_id("sequencer")),
        ("RILL_TRANSACTIONAL_ID", stack.broker.group_id("sequencer")),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start(Path::new(BINARY), &env)
}

/// Sends `count` messages to `profile` through `client`, `parallel` at a
/// time; their ids.
async fn send(client: &Client, profile: Uuid, count: usize, parallel: usize) -> BTreeSet<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        let client = client.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..count).step_by(parallel) {
                let body = json!({ "body": format!("message {n}") });
                let response = client
                    .post_json(&format!("/live/{profile}/messages"), &body)
                    .await;
                assert_eq!(response.status(), 200, "send {n}");
                let reply: Value = response.json().await.expect("json");
                ids.push(reply["id"].as_str().expect("id").to_owned());
            }
            ids
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// The messages a client received, in order: (position, id).
#[derive(Debug, Default)]
struct Received(Vec<(Position, String)>);

impl Received {
    /// Records `event` if it is a message; panics on a gap (nothing here
    /// should be missed).
    fn record(&mut self, event: &Value) {
        match event["type"].as_str() {
            Some("message") => {
                let position = event["position"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .expect("a valid position");
                let id = event["id"].as_str().expect("an id").to_owned();
                self.0.push((position, id));
            }
            Some("gap") => panic!("a gap: {event}"),
            _ => {}
        }
    }

    fn ids(&self) -> Vec<String> {
        self.0.iter().map(|(_, id)| id.clone()).collect()
    }

    fn has_all(&self, sent: &BTreeSet<String>) -> bool {
        let seen: BTreeSet<&String> = self.0.iter().map(|(_, id)| id).collect();
        sent.iter().all(|id| seen.contains(id))
    }

    /// Every message of `sent` exactly once, positions increasing.
    fn assert_exactly_once_in_order(&self, sent: &BTreeSet<String>, who: &str) {
        let seen: BTreeSet<String> = self.ids().into_iter().collect();
        assert_eq!(&seen, sent, "{who}: exactly what was sent");
        assert_eq!(self.0.len(), sent.len(), "{who}: no message twice");
        for pair in self.0.windows(2) {
            assert!(
                pair[0].0.offset < pair[1].0.offset,
                "{who}: out of order: {} then {}",
                pair[0].0,
                pair[1].0
            );
        }
    }
}

/// Reads a WebSocket client until `sent` arrived.
async fn read_ws(ws: &mut WsClient, received: &mut Received, sent: &BTreeSet<String>) {
    let deadline = Instant::now() + CATCH_UP;
    while !received.has_all(sent) {
        assert!(
            Instant::now() < deadline,
            "WebSocket: still missing messages"
        );
        received.record(&ws.next_event().await);
    }
}

/// Reads a WebSocket client in the background (a client that stopped
/// reading would fall behind and be told of a gap) until it has `count`
/// messages.
fn ws_reader(mut ws: WsClient, count: usize) -> tokio::task::JoinHandle<Received> {
    tokio::spawn(async move {
        let deadline = Instant::now() + CATCH_UP;
        let mut received = Received::default();
        while received.0.len() < count {
            assert!(
                Instant::now() < deadline,
                "WebSocket: still missing messages"
            );
            received.record(&ws.next_event().await);
        }
        received
    })
}

/// As [`ws_reader`], for an SSE client; each message's SSE id must be its
/// position.
fn sse_reader(mut sse: SseClient, count: usize) -> tokio::task::JoinHandle<Received> {
    tokio::spawn(async move {
        let deadline = Instant::now() + CATCH_UP;
        let mut received = Received::default();
        while received.0.len() < count {
            assert!(Instant::now() < deadline, "SSE: still missing messages");
            let event = sse.next_event().await;
            if event.data["type"] == "message" {
                assert_eq!(
                    event.id.as_deref(),
                    event.data["position"].as_str(),
                    "the SSE id is the position"
                );
            }
            received.record(&event.data);
        }
        received
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_two_edges_see_one_order() {
    let stack = Stack::start(2).await;
    let room = stack.create_profile("Room").await;
    let (on_first, on_second) = (stack.edge_client(0), stack.edge_client(1));
    on_first.login(stack.member_of(&[room]).await).await;
    on_second.login(stack.member_of(&[room]).await).await;
    let by_ws = ws_reader(on_first.ws(room).await, 300);
    let by_sse = sse_reader(on_second.sse(room).await, 300);

    // Senders on both edges at once: their messages meet in one order.
    let (a, b) = (on_first.clone(), on_second.clone());
    let (first, second) = tokio::join!(send(&a, room, 150, 4), send(&b, room, 150, 4));
    let sent: BTreeSet<String> = first.into_iter().chain(second).collect();

    let by_ws = by_ws.await.expect("WebSocket reader");
    let by_sse = by_sse.await.expect("SSE reader");
    by_ws.assert_exactly_once_in_order(&sent, "WebSocket");
    by_sse.assert_exactly_once_in_order(&sent, "SSE");
    assert_eq!(by_ws.0, by_sse.0, "the same order, the same positions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_killed_mid_stream_neither_loses_nor_doubles() {
    let stack = Stack::start_without_sequencer(1).await;
    let mut sequencer = sequencer(&stack);
    let room = stack.create_profile("Room").await;
    // One session per user and profile: a user for each client.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = stack.edge_client(0);
        client.login(stack.member_of(&[room]).await).await;
        clients.push(client);
    }
    let sender = clients[0].clone();
    let total = 2000;
    let by_ws = ws_reader(clients[1].ws(room).await, total);
    let by_sse = sse_reader(clients[2].sse(room).await, total);
    let mut watcher = clients[3].ws(room).await;

    let sending = {
        let sender = sender.clone();
        tokio::spawn(async move { send(&sender, room, total, 8).await })
    };
    // Kill it once it is busy copying, then start it again (the same
    // transactional id: its open transaction is aborted at once).
    let mut seen = Received::default();
    while seen.0.len() < 200 {
        seen.record(&watcher.next_event().await);
    }
    sequencer.process.kill();
    let _sequencer = self::sequencer(&stack);

    let sent = sending.await.expect("sender");
    let by_ws = by_ws.await.expect("WebSocket reader");
    let by_sse = by_sse.await.expect("SSE reader");
    by_ws.assert_exactly_once_in_order(&sent, "WebSocket");
    by_sse.assert_exactly_once_in_order(&sent, "SSE");
    assert_eq!(by_ws.0, by_sse.0);
}

/// Deletes `topic` and waits until the broker no longer lists it.
async fn delete_topic(kafka: &rill_runtime::KafkaSettings, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = rill_runtime::kafka::client_config(kafka)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .delete_topics(&[topic], &options)
        .await
        .expect("delete")
    {
        result.expect("topic deleted");
    }
    let probe: BaseConsumer = rill_runtime::kafka::client_config(kafka)
        .create()
        .expect("probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = probe
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let listed = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none());
        if !listed {
            return;
        }
        assert!(Instant::now() < deadline, "{topic} is still listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first `count` events of a session opened after `position`.
async fn opening(client: &Client, room: Uuid, position: &str, count: usize) -> Vec<Value> {
    let path = format!("/live/{room}/ws?last_position={position}");
    let mut ws = client.try_ws(&path, &[]).await.expect("opens");
    let mut events = Vec::new();
    while events.len() < count {
        events.push(ws.next_event().await);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_from_before_the_topic_was_recreated_gets_a_gap() {
    let mut stack = Stack::start_without_sequencer(1).await;
    let mut sequencer = sequencer(&stack);
    let room = stack.create_profile("Room").await;
    let user = stack.member_of(&[room]).await;
    let client = stack.edge_client(0);
    client.login(user).await;
    let mut ws = client.ws(room).await;
    let mut before = Received::default();
    let sent = send(&client, room, 5, 1).await;
    read_ws(&mut ws, &mut before, &sent).await;
    let (old, _) = before.0.last().cloned().expect("a message");
    drop(ws);

    // The sequenced topic deleted and created again: offsets start over.
    stack.edges[0].stop().await;
    sequencer.process.kill();
    let kafka = stack.broker.kafka_settings();
    delete_topic(&kafka, &kafka.sequenced_topic).await;
    rill_runtime::kafka::create_topics(&kafka)
        .await
        .expect("topics created");
    let _sequencer = self::sequencer(&stack);
    let edge = start_edge(edge_settings(&stack.broker, &stack.redis, &stack.store, 2)).await;
    let client = Client::new(&edge.url());
    client.login(user).await;
    let mut ws = client.ws(room).await;
    let mut after = Received::default();
    let sent = send(
        &client,
        room,
        usize::try_from(old.offset).expect("small") + 5,
        1,
    )
    .await;
    read_ws(&mut ws, &mut after, &sent).await;
    drop(ws);
    assert!(
        after.0.iter().any(|(p, _)| p.offset >= old.offset),
        "the new topic reached the old position's offset"
    );

    // The old position: a gap, then the newest messages of the new topic.
    let events = opening(&client, room, &old.to_string(), 4).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds[..3], ["ready", "presence", "gap"], "{events:?}");
    assert_eq!(events[2]["reason"], "unknown_position");
    assert_eq!(kinds[3], "message");
    assert_ne!(
        events[3]["position"].as_str(),
        Some(old.to_string().as_str())
    );
    // A position of the new topic is trusted: what follows it, no gap.
    let (new, _) = after.0[after.0.len() - 2].clone();
    let events = opening(&client, room, &new.to_string(), 3).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds[..3], ["ready", "presence", "message"], "{events:?}");
    assert_eq!(
        events[2]["id"].as_str(),
        Some(after.0[after.0.len() - 1].1.as_str())
    );
}
