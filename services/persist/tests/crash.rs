//! Nothing acknowledged is lost, nothing is written twice: the persistence
//! consumer is killed with SIGKILL while 10,000 messages are being sent, and
//! after it restarts every message is in history exactly once.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rill_testkit::Stack;
use rill_testkit::service::ServiceProcess;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_persist");
const MESSAGES: usize = 10_000;

fn persist_process(stack: &Stack) -> ServiceProcess {
    let mut env = stack.broker.env();
    env.extend(stack.store.env());
    env.push(("RILL_GROUP_ID", stack.broker.group_id("persist")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start(Path::new(BINARY), &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_in_history_exactly_once_after_a_kill_9() {
    let stack = Stack::start_without_persist(1).await;
    let mut persist = persist_process(&stack);
    let profile = stack.create_profile("Busy room").await;
    let client = stack.client();
    client.login(stack.member_of(&[profile]).await).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;

    // Send everything (the edge pipelines the Kafka acks), killing persist
    // a third of the way in and restarting it two thirds in.
    let mut acked = HashSet::new();
    let mut sent = 0;
    let (mut killed, mut restarted) = (false, false);
    while acked.len() < MESSAGES {
        while sent < MESSAGES && sent - acked.len() < 64 {
            ws.send(&json!({"type": "send", "body": format!("n{sent}"), "ref": sent.to_string()}))
                .await;
            sent += 1;
        }
        let event = ws.next_event().await;
        match event["type"].as_str() {
            Some("ack") => {
                acked.insert(event["id"].as_str().expect("id").to_owned());
            }
            Some("error") => panic!("send refused: {event}"),
            _ => {}
        }
        if !killed && acked.len() >= MESSAGES / 3 {
            persist.process.kill();
            killed = true;
        }
        if !restarted && acked.len() >= 2 * MESSAGES / 3 {
            persist = persist_process(&stack);
            restarted = true;
        }
    }

    let stored = history_ids(&stack, profile, MESSAGES).await;
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "no message twice in history");
    let missing = acked.difference(&distinct).count();
    assert_eq!(
        missing, 0,
        "{missing} acknowledged messages are not in history"
    );
    assert_eq!(
        distinct, acked,
        "history holds exactly the acknowledged messages"
    );
}

/// Every message id in the profile's history, newest first, once history
/// holds `expected` of them (or after a minute).
async fn history_ids(stack: &Stack, profile: uuid::Uuid, expected: usize) -> Vec<String> {
    let api = stack.server();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ids = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut path = format!("/api/profiles/{profile}/messages?limit=200");
            if let Some(b) = &before {
                path.push_str(&format!("&before={b}"));
            }
            let page: Value = api.get(&path).await.json().await.expect("history page");
            let items = page["items"].as_array().expect("items");
            ids.extend(
                items
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned)),
            );
            match page["next_before"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => break,
            }
        }
        if ids.len() >= expected || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
