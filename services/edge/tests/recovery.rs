//! Recovery: a plain client (one that drops nothing itself) that comes
//! back with its last seen position gets exactly what it missed, each
//! message once and in the profile's order, whether it left by itself,
//! its edge was killed (kill -9), or its edge drained on SIGTERM.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rill_domain::Position;
use rill_testkit::auth_env;
use rill_testkit::service::ServiceProcess;
use rill_testkit::traefik::Traefik;
use rill_testkit::{Client, SseClient, Stack, WsClient};
use serde_json::{Value, json};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_edge");

/// How long a receiver may take to get everything that was sent.
const CATCH_UP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ws,
    Sse,
}

/// A live session over either transport.
enum Live {
    /// The socket, and its first event (read to see whether it was refused).
    Ws(Box<WsClient>, Option<Value>),
    Sse(SseClient),
}

impl Live {
    /// Opens a session, recovering from `last` if given (a query parameter
    /// for WebSocket, `Last-Event-ID` for SSE, as browsers send it).
    async fn open(
        client: &Client,
        transport: Transport,
        profile: Uuid,
        last: Option<&str>,
    ) -> Result<Live, (u16, String)> {
        match transport {
            Transport::Ws => {
                let query = last
                    .map(|position| format!("?last_position={position}"))
                    .unwrap_or_default();
                let path = format!("/live/{profile}/ws{query}");
                let mut ws = client.try_ws(&path, &[]).await?;
                // A second session is refused after the upgrade (4409).
                let first = ws
                    .next_or_close()
                    .await
                    .map_err(|close| (0, format!("{close:?}")))?;
                if first["code"] == "already_live" {
                    return Err((409, first.to_string()));
                }
                Ok(Live::Ws(Box::new(ws), Some(first)))
            }
            Transport::Sse => {
                let headers: Vec<(&str, &str)> =
                    last.map(|id| ("last-event-id", id)).into_iter().collect();
                let path = format!("/live/{profile}/sse");
                client.try_sse(&path, &headers).await.map(Live::Sse)
            }
        }
    }

    /// The next event, `None` once the session ended.
    async fn next(&mut self) -> Option<Value> {
        match self {
            Live::Ws(_, first @ Some(_)) => first.take(),
            Live::Ws(ws, None) => ws.next_or_close().await.ok(),
            Live::Sse(sse) => sse.next_or_end().await.map(|event| event.data),
        }
    }
}

/// Every message a client received, in the order received.
#[derive(Debug, Default)]
struct Tally {
    /// (position, id) of each message event.
    received: Vec<(Position, String)>,
    seen: BTreeSet<String>,
    edges: Vec<String>,
}

impl Tally {
    /// Records `event`; its type.
    fn record(&mut self, event: &Value) -> String {
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "message" => {
                let id = event["id"].as_str().expect("message id").to_owned();
                let position = event["position"]
                    .as_str()
                    .expect("a position")
                    .parse()
                    .expect("a valid position");
                self.seen.insert(id.clone());
                self.received.push((position, id));
            }
            "ready" => self
                .edges
                .push(event["edge_id"].as_str().unwrap_or_default().into()),
            "gap" => panic!("a gap, though everything missed was in the window: {event}"),
            _ => {}
        }
        kind
    }

    /// The last position seen: the one to recover from.
    fn last(&self) -> Option<String> {
        self.received
            .last()
            .map(|(position, _)| position.to_string())
    }

    fn has_all(&self, sent: &BTreeSet<String>) -> bool {
        sent.iter().all(|id| self.seen.contains(id))
    }

    /// Reads `live` until every id of `sent` arrived; false if the session
    /// ended first. Panics after [`CATCH_UP`].
    async fn read_until(&mut self, live: &mut Live, sent: &BTreeSet<String>) -> bool {
        let deadline = Instant::now() + CATCH_UP;
        while !self.has_all(sent) {
            assert!(
                Instant::now() < deadline,
                "still missing {} messages",
                self.missing(sent)
            );
            match live.next().await {
                Some(event) => {
                    self.record(&event);
                }
                None => return false,
            }
        }
        true
    }

    fn missing(&self, sent: &BTreeSet<String>) -> usize {
        sent.iter().filter(|id| !self.seen.contains(*id)).count()
    }

    /// Exactly what was sent, each message once, in increasing positions
    /// across every reconnect.
    fn assert_exactly(&self, sent: &BTreeSet<String>) {
        assert_eq!(&self.seen, sent, "received exactly what was sent");
        assert_eq!(
            self.received.len(),
            sent.len(),
            "no message twice ({} events for {} messages)",
            self.received.len(),
            sent.len()
        );
        for pair in self.received.windows(2) {
            assert!(
                pair[0].0.offset < pair[1].0.offset,
                "out of order: {} then {}",
                pair[0].0,
                pair[1].0
            );
        }
    }
}

/// Sends `count` messages to `profile`, `parallel` at a time; their ids.
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

async fn recovers_after_leaving(transport: Transport) {
    let stack = Stack::start(2).await;
    let room = stack.create_profile("Room").await;
    let receiver = stack.edge_client(0);
    receiver.login(stack.member_of(&[room]).await).await;
    let sender = stack.edge_client(1);
    sender.login(stack.member_of(&[room]).await).await;

    let mut tally = Tally::default();
    let mut live = Live::open(&receiver, transport, room, None)
        .await
        .expect("opens");
    let mut sent = send(&sender, room, 100, 4).await;
    assert!(tally.read_until(&mut live, &sent).await);
    drop(live);

    // 1,000 messages while away, then more while it comes back.
    sent.extend(send(&sender, room, 1000, 8).await);
    let last = tally.last().expect("a last id");
    let more = {
        let sender = sender.clone();
        tokio::spawn(async move { send(&sender, room, 200, 2).await })
    };
    let mut live = Live::open(&receiver, transport, room, Some(&last))
        .await
        .expect("reopens");
    sent.extend(more.await.expect("sender"));
    assert!(tally.read_until(&mut live, &sent).await);
    tally.assert_exactly(&sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_gets_what_it_missed_once() {
    recovers_after_leaving(Transport::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_gets_what_it_missed_from_last_event_id() {
    recovers_after_leaving(Transport::Sse).await;
}

/// Opens a session through `client`, retrying refusals (the ingress still
/// sending to a dead or draining edge, the old lock not yet free) until
/// `timeout`; the session and the statuses of the refusals.
async fn reopen(
    client: &Client,
    transport: Transport,
    profile: Uuid,
    last: Option<&str>,
    timeout: Duration,
) -> (Live, Vec<u16>) {
    let deadline = Instant::now() + timeout;
    let mut refusals = Vec::new();
    loop {
        match Live::open(client, transport, profile, last).await {
            Ok(live) => return (live, refusals),
            Err((status, body)) => {
                assert!(Instant::now() < deadline, "still refused: {status} {body}");
                refusals.push(status);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_edge_is_killed_recovers_on_the_other_edge() {
    let stack = Stack::start(1).await;
    let ttl = 3;
    let edge = |name: &str| {
        let mut env = stack.broker.env();
        env.extend(stack.store.env());
        env.extend([
            ("RILL_NODE_ID", name.to_owned()),
            ("RILL_REDIS__URLS", stack.redis.url()),
            ("RILL_REDIS__SESSION_TTL_SECS", ttl.to_string()),
        ]);
        env.extend(auth_env());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ServiceProcess::start(Path::new(BINARY), &env)
    };
    let mut edges = [edge("edge-a"), edge("edge-b")];
    let traefik = Traefik::start(&[edges[0].addr, edges[1].addr], stack.api).await;
    let room = stack.create_profile("Room").await;
    let receiver = Client::new(&traefik.url());
    receiver.login(stack.member_of(&[room]).await).await;
    let sender = stack.edge_client(0);
    sender.login(stack.member_of(&[room]).await).await;

    let mut tally = Tally::default();
    let mut live = Live::open(&receiver, Transport::Ws, room, None)
        .await
        .expect("opens");
    let mut sent = send(&sender, room, 50, 2).await;
    assert!(tally.read_until(&mut live, &sent).await);
    let first_edge = tally.edges[0].clone();
    let victim = if first_edge == "edge-a" { 0 } else { 1 };
    edges[victim].process.kill(); // kill -9
    let killed = Instant::now();
    assert!(
        live.next().await.is_none(),
        "the session died with its edge"
    );

    let away = {
        let sender = sender.clone();
        tokio::spawn(async move { send(&sender, room, 1000, 8).await })
    };
    let last = tally.last().expect("a last id");
    let (mut live, refusals) = reopen(
        &receiver,
        Transport::Ws,
        room,
        Some(&last),
        Duration::from_secs(20),
    )
    .await;
    let waited = killed.elapsed();
    sent.extend(away.await.expect("sender"));
    assert!(tally.read_until(&mut live, &sent).await);
    tally.assert_exactly(&sent);
    assert_ne!(
        tally.edges.last(),
        Some(&first_edge),
        "on the other edge now"
    );
    // The dead edge's lock held the pair until its TTL, no longer.
    assert!(
        refusals.contains(&409),
        "the lock outlived its edge: {refusals:?}"
    );
    assert!(
        waited < Duration::from_secs(ttl + 3),
        "launched again soon after the TTL: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_draining_edge_move_to_the_other_edge_without_loss() {
    let window = Duration::from_secs(4);
    let mut stack = Stack::start_with(2, |s| s.drain.window_secs = window).await;
    let room = stack.create_profile("Room").await;
    let sender = stack.edge_client(1);
    sender.login(stack.member_of(&[room]).await).await;

    // Receivers through Traefik: its round robin puts some on each edge.
    let (all_sent_tx, all_sent) = tokio::sync::watch::channel(BTreeSet::<String>::new());
    let mut receivers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let client = stack.client();
        client.login(stack.member_of(&[room]).await).await;
        let mut all_sent = all_sent.clone();
        let mut live = Live::open(&client, Transport::Ws, room, None)
            .await
            .expect("opens");
        receivers.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let sent = all_sent.borrow_and_update().clone();
                if !sent.is_empty() && tally.has_all(&sent) {
                    tally.assert_exactly(&sent);
                    return tally.edges;
                }
                let event = tokio::select! {
                    event = live.next() => event,
                    _ = all_sent.changed() => continue,
                };
                let reconnect = match event {
                    Some(event) if tally.record(&event) == "reconnect" => {
                        event["after_ms"].as_u64().expect("after_ms")
                    }
                    Some(_) => continue,
                    None => 0,
                };
                tokio::time::sleep(Duration::from_millis(reconnect)).await;
                let last = tally.last();
                let timeout = Duration::from_secs(15);
                (live, _) = reopen(&client, Transport::Ws, room, last.as_deref(), timeout).await;
            }
        });
    }

    // A steady stream of messages, and a SIGTERM to edge 0 in the middle.
    let stream = {
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut sent = BTreeSet::new();
            for _ in 0..40 {
                sent.extend(send(&sender, room, 10, 2).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let draining = Instant::now();
    stack.edges[0].stop().await;
    let drained_in = draining.elapsed();
    let sent = stream.await.expect("sender");
    all_sent_tx.send_replace(sent);

    let moved = receivers
        .join_all()
        .await
        .into_iter()
        .filter(|edges| edges.first().map(String::as_str) == Some("edge-1"))
        .inspect(|edges| {
            assert_eq!(
                edges.last().map(String::as_str),
                Some("edge-2"),
                "{edges:?}"
            )
        })
        .count();
    assert!(moved > 0, "some receivers were on the drained edge");
    assert!(
        drained_in <= window + Duration::from_secs(1),
        "the edge exits within its drain window: {drained_in:?}"
    );
}
