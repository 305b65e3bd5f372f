//! The whole platform on Apache Cassandra: the api, persist and two edges
//! share a keyspace of the test's own on the test run's Cassandra. Users,
//! profiles and memberships go through Kafka to the store, the edges check
//! membership in it, chat crosses edges, and history comes back from it.

use rill_testkit::Stack;
use rill_testkit::store::TestStore;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_membership_and_history_on_cassandra() {
    let stack = Stack::start_on(2, TestStore::cassandra()).await;
    let room = stack.create_profile("Room on Cassandra").await;
    let ada = stack.member_of(&[room]).await;
    let bob = stack.member_of(&[room]).await;
    let outsider = stack.create_user("Outsider").await;

    let api = stack.server();
    let profile: Value = api
        .get(&format!("/api/profiles/{room}"))
        .await
        .json()
        .await
        .expect("profile");
    assert_eq!(profile["name"], "Room on Cassandra");
    let members: Value = api
        .get(&format!("/api/profiles/{room}/members"))
        .await
        .json()
        .await
        .expect("members");
    let ids: Vec<&str> = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ids.contains(&ada.to_string().as_str()) && ids.contains(&bob.to_string().as_str()));
    assert_eq!(ids.len(), 2, "only the two members: {members}");

    // The edges ask the store who is a member.
    let stranger = stack.edge_client(0);
    stranger.login(outsider).await;
    let path = format!("/live/{room}/ws");
    match stranger.try_ws(&path, &[]).await {
        Err((status, _)) => assert_eq!(status, 403, "a non-member is refused"),
        Ok(_) => panic!("a non-member must not stream the room"),
    }

    let a = stack.edge_client(0);
    a.login(ada).await;
    let b = stack.edge_client(1);
    b.login(bob).await;
    let mut ws_a = a.ws(room).await;
    let mut ws_b = b.ws(room).await;
    ws_a.next_of_type("ready").await;
    ws_b.next_of_type("ready").await;

    let mut sent = Vec::new();
    for n in 0..5 {
        ws_a.send(&json!({"type": "send", "body": format!("m{n}"), "ref": n.to_string()}))
            .await;
        let ack = ws_a.next_of_type("ack").await;
        sent.push(ack["id"].as_str().expect("id").to_owned());
        let got = ws_b.next_of_type("message").await;
        assert_eq!(got["body"], format!("m{n}"));
    }

    // Persist wrote them: history, newest first, exactly the five.
    let history = wait_for_history(&stack, room, sent.len()).await;
    let ids: Vec<String> = history
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(
        ids, newest_first,
        "history holds the messages once, newest first"
    );

    // Unbinding goes through Kafka and the store too.
    let response = api
        .delete(&format!("/api/profiles/{room}/members/{bob}"))
        .await;
    assert_eq!(response.status(), 204);
    let late = stack.edge_client(1);
    late.login(bob).await;
    drop(ws_b);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while late.try_ws(&format!("/live/{room}/ws"), &[]).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "an unbound user could still open the room"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The profile's history once it holds `expected` messages (or after 30 s).
async fn wait_for_history(stack: &Stack, room: uuid::Uuid, expected: usize) -> Vec<Value> {
    let api = stack.server();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let page: Value = api
            .get(&format!("/api/profiles/{room}/messages?limit=50"))
            .await
            .json()
            .await
            .expect("history page");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= expected || std::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
