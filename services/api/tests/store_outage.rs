//! The store (a Cassandra node of the test's own) killed under the whole
//! stack while messages are sent and acknowledged: history reads answer
//! 503 `store_unavailable` with `Retry-After` while it is down, each in
//! bounded time (not a 500, not a hang), through the api and through
//! Traefik; once it is back, persist catches up and history holds each
//! acknowledged message exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rill_testkit::cassandra::CassandraNode;
use rill_testkit::store::TestStore;
use rill_testkit::{Client, Stack, TEST_API_KEY};
use serde_json::{Value, json};
use uuid::Uuid;

/// Messages sent before the node dies, and while it is down.
const BEFORE: usize = 10;
const DURING: usize = 20;

/// How long one history read may take while the store is down: the
/// driver fails a request on a dead node at once; a read waiting past
/// this hangs.
const READ_BOUND: Duration = Duration::from_secs(10);

/// How long history may take to hold everything once the node is back
/// (the driver reconnects with a back-off of at most 10 s, persist retries
/// its writes with one of at most 5 s).
const CATCH_UP: Duration = Duration::from_secs(120);

/// Reads the profile's history once: its status, `Retry-After`, body, and
/// how long it took.
async fn read(client: &Client, profile: Uuid) -> (u16, bool, Value, Duration) {
    let asked = Instant::now();
    let response = client
        .get(&format!("/api/profiles/{profile}/messages?limit=200"))
        .await;
    let took = asked.elapsed();
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json().await.unwrap_or_default();
    (status, retry_after, body, took)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_503_while_the_store_is_down_and_everything_once_after() {
    let mut node = tokio::task::spawn_blocking(CassandraNode::start)
        .await
        .expect("start a node");
    let store = TestStore::Cassandra {
        contact_point: node.contact_point(),
        keyspace: format!("rill_test_{}", Uuid::new_v4().simple()),
    };
    let stack = Stack::start_on(1, store).await;
    let profile = stack.create_profile("Room").await;
    let client = stack.edge_client(0);
    client.login(stack.member_of(&[profile]).await).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;
    let api = Client::new(&format!("http://{}", stack.api)).with_api_key(TEST_API_KEY);
    let through_traefik = stack.server();

    let mut acked = BTreeSet::new();
    let mut send = async |n: usize| {
        ws.send(&json!({"type": "send", "body": format!("m{n}"), "ref": n.to_string()}))
            .await;
        let ack = ws.next_of_type("ack").await;
        acked.insert(ack["id"].as_str().expect("id").to_owned());
    };
    for n in 0..BEFORE {
        send(n).await;
    }
    let (status, _, _, _) = read(&api, profile).await;
    assert_eq!(status, 200, "history before the outage");

    node.process().kill();
    // Sends need only Kafka: they are acknowledged while the store is down;
    // history reads are refused in the meantime, each as a 503.
    let mut reads = Vec::new();
    for n in BEFORE..BEFORE + DURING {
        send(n).await;
        if n % 4 == 0 {
            for via in [&api, &through_traefik] {
                reads.push(read(via, profile).await);
            }
        }
    }
    for (status, retry_after, body, took) in &reads {
        assert_eq!(*status, 503, "a history read with the store down: {body}");
        assert_eq!(body["error"], "store_unavailable", "{body}");
        assert!(retry_after, "503 without Retry-After");
        assert!(*took < READ_BOUND, "a history read took {took:?}");
    }
    let slowest = reads.iter().map(|r| r.3).max().unwrap_or_default();

    let mut node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .expect("restart the node");
    let back = Instant::now();

    // Persist catches up: every acknowledged message, once.
    let stored = loop {
        let (status, _, page, _) = read(&api, profile).await;
        if status == 200 {
            let stored = ids(&page);
            if stored.len() >= acked.len() {
                break stored;
            }
        }
        assert!(
            back.elapsed() < CATCH_UP,
            "history still lacks messages {CATCH_UP:?} after the node came back"
        );
        // The interval between reads, not a wait for readiness.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let distinct: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "no message twice in history");
    assert_eq!(
        distinct, acked,
        "history holds exactly the acknowledged messages"
    );
    eprintln!(
        "{} reads while the store was down, all 503, slowest {slowest:?}; history complete {:?} after the node was back",
        reads.len(),
        back.elapsed()
    );
    drop(stack);
    node.process().kill();
}
