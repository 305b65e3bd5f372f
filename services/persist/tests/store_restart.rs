//! Persist while its store dies: the Cassandra node under the whole stack
//! is killed (SIGKILL) while messages keep being sent and acknowledged,
//! then started again; persist backs off, then writes everything, and
//! history holds every acknowledged message exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rill_testkit::Stack;
use rill_testkit::cassandra::CassandraNode;
use rill_testkit::store::TestStore;
use serde_json::{Value, json};

const BEFORE: usize = 20;
const DURING: usize = 20;

/// How long history may take to hold everything once the node is back:
/// the driver reconnects with a back-off of at most 10 s, persist retries
/// its write with one of at most 5 s.
const CATCH_UP: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_writes_everything_once_after_its_cassandra_node_restarts() {
    let mut node = tokio::task::spawn_blocking(CassandraNode::start)
        .await
        .expect("start a node");
    let store = TestStore::Cassandra {
        contact_point: node.contact_point(),
        keyspace: format!("rill_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let stack = Stack::start_on(1, store).await;
    let profile = stack.create_profile("Room").await;
    let client = stack.edge_client(0);
    client.login(stack.member_of(&[profile]).await).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;

    let mut acked = HashSet::new();
    let mut send = async |n: usize| {
        ws.send(&json!({"type": "send", "body": format!("m{n}"), "ref": n.to_string()}))
            .await;
        let ack = ws.next_of_type("ack").await;
        acked.insert(ack["id"].as_str().expect("id").to_owned());
    };
    for n in 0..BEFORE {
        send(n).await;
    }
    node.process().kill();
    // Sends need only Kafka (the session's membership was checked when it
    // opened): they are acknowledged while the store is down.
    for n in BEFORE..BEFORE + DURING {
        send(n).await;
    }
    let mut node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .expect("restart the node");

    let stored = history_once_it_holds(&stack, profile, BEFORE + DURING).await;
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "no message twice in history");
    assert_eq!(
        distinct, acked,
        "history holds exactly the acknowledged messages"
    );
    drop(stack);
    node.process().kill();
}

/// The profile's history (ids, newest first) once it holds `expected`
/// messages; the last answer after [`CATCH_UP`] (reads fail while the
/// store is away).
async fn history_once_it_holds(stack: &Stack, profile: uuid::Uuid, expected: usize) -> Vec<String> {
    let api = stack.server();
    let deadline = Instant::now() + CATCH_UP;
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        let response = api
            .get(&format!("/api/profiles/{profile}/messages?limit=200"))
            .await;
        if response.status().is_success() {
            let page: Value = response.json().await.expect("history page");
            ids = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
            if ids.len() >= expected {
                return ids;
            }
        }
        // The interval between reads, not a wait for readiness.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ids
}
