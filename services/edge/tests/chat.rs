//! Chat through Kafka, end to end: clients pinned by Traefik's sticky cookie
//! to different edges exchange messages over every transport.

use rill_testkit::{Client, Stack};
use serde_json::json;
use uuid::Uuid;

/// A client pinned to an edge other than `other`'s, logged in as a new user.
async fn client_on_other_edge(stack: &Stack, other: &str) -> (Client, String) {
    for _ in 0..20 {
        let client = stack.client();
        let edge = client.edge().await;
        if edge != other {
            return (client, edge);
        }
    }
    panic!("Traefik sent 20 new clients to {other}: no balancing");
}

/// Two clients logged in as members of `profiles`, pinned to two
/// different edges.
async fn two_clients_on_two_edges(stack: &Stack, profiles: &[Uuid]) -> (Client, Client) {
    let a = stack.client();
    let edge_a = a.edge().await;
    let (b, edge_b) = client_on_other_edge(stack, &edge_a).await;
    assert_ne!(edge_a, edge_b);
    a.login(stack.member_of(profiles).await).await;
    b.login(stack.member_of(profiles).await).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_websocket_across_edges() {
    let stack = Stack::start(2).await;
    let profile = stack.create_profile("Room").await;
    let (a, b) = two_clients_on_two_edges(&stack, &[profile]).await;
    let mut ws_a = a.ws(profile).await;
    let mut ws_b = b.ws(profile).await;
    let ready_a = ws_a.next_of_type("ready").await;
    let ready_b = ws_b.next_of_type("ready").await;
    assert_ne!(
        ready_a["edge_id"], ready_b["edge_id"],
        "the two sessions must be on different edges"
    );

    ws_a.send(&json!({"type": "send", "body": "hello from a", "ref": "a1"}))
        .await;
    let ack = ws_a.next_of_type("ack").await;
    assert_eq!(ack["ref"], "a1");
    let got = ws_b.next_of_type("message").await;
    assert_eq!(got["body"], "hello from a");
    assert_eq!(
        got["id"], ack["id"],
        "the delivered message has the id the sender was acked with"
    );
    assert_eq!(got["profile_id"], profile.to_string());
    assert_eq!(got["sender_id"], ready_a["user_id"]);

    // The sender's own session gets the message too: one stream, one order.
    let own = ws_a.next_of_type("message").await;
    assert_eq!(own["id"], ack["id"]);

    ws_b.send(&json!({"type": "send", "body": "and back"}))
        .await;
    let back = ws_a.next_of_type("message").await;
    assert_eq!(back["body"], "and back");
    assert_eq!(back["sender_id"], ready_b["user_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_sends_with_post_to_a_websocket_client() {
    let stack = Stack::start(2).await;
    let profile = stack.create_profile("Room").await;
    let (sse_user, ws_user) = two_clients_on_two_edges(&stack, &[profile]).await;
    let mut sse = sse_user.sse(profile).await;
    let mut ws = ws_user.ws(profile).await;
    sse.next_of_type("ready").await;
    ws.next_of_type("ready").await;

    let response = sse_user
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "from sse", "ref": "s1"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.expect("json reply");
    assert_eq!(reply["ref"], "s1");

    let got = ws.next_of_type("message").await;
    assert_eq!(got["body"], "from sse");
    assert_eq!(got["id"], reply["id"]);
    // The sender's own stream gets it too, with its position as the SSE
    // id (what the browser sends back as Last-Event-ID).
    let own = sse.next_of_type("message").await;
    assert_eq!(own.data["body"], "from sse");
    assert_eq!(own.data["id"], reply["id"]);
    assert_eq!(own.id.as_deref(), own.data["position"].as_str());
    assert_eq!(own.data["position"], got["position"], "one order for all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_http_post_deliver_to_sse() {
    let stack = Stack::start(2).await;
    let profile = stack.create_profile("Room").await;
    let (sender, listener) = two_clients_on_two_edges(&stack, &[profile]).await;
    let mut sse = listener.sse(profile).await;
    sse.next_of_type("ready").await;

    let response = sender
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "posted"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sse.next_of_type("message").await.data["body"], "posted");

    let mut ws = sender.ws(profile).await;
    ws.next_of_type("ready").await;
    ws.send(&json!({"type": "send", "body": "over ws"})).await;
    assert_eq!(sse.next_of_type("message").await.data["body"], "over ws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stay_on_their_profile() {
    let stack = Stack::start(2).await;
    let (p1, p2) = (
        stack.create_profile("p1").await,
        stack.create_profile("p2").await,
    );
    let (a, b) = two_clients_on_two_edges(&stack, &[p1, p2]).await;
    let mut on_p2 = b.ws(p2).await;
    on_p2.next_of_type("ready").await;
    let mut on_p1 = a.ws(p1).await;
    on_p1.next_of_type("ready").await;
    on_p1
        .send(&json!({"type": "send", "body": "for p1 only"}))
        .await;
    on_p1.next_of_type("message").await;
    // A later message on p2 arrives first on p2: nothing from p1 came before it.
    b.post_json(&format!("/live/{p2}/messages"), &json!({"body": "for p2"}))
        .await;
    assert_eq!(on_p2.next_of_type("message").await["body"], "for p2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_its_sticky_cookie_lands_on_the_same_edge() {
    let stack = Stack::start(2).await;
    let profile = stack.create_profile("Room").await;
    let client = stack.client();
    client.login(stack.member_of(&[profile]).await).await;
    let first = client.edge().await;
    assert!(
        client.cookie("rill_edge").is_some(),
        "Traefik set its sticky cookie"
    );
    for _ in 0..5 {
        let mut ws = client.ws(profile).await;
        let ready = ws.next_of_type("ready").await;
        assert_eq!(ready["edge_id"], first.as_str());
        drop(ws);
        let mut sse = client.sse(profile).await;
        assert_eq!(
            sse.next_of_type("ready").await.data["edge_id"],
            first.as_str()
        );
    }
}

/// A send retried with its idempotency key (after a lost ack, say), on
/// another edge and over another transport, answers the first id and is
/// delivered and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_retried_with_its_idempotency_key_arrives_once() {
    let stack = Stack::start(2).await;
    let profile = stack.create_profile("Room").await;
    let (sender, listener) = (
        stack.member_of(&[profile]).await,
        stack.member_of(&[profile]).await,
    );
    let on_first = stack.edge_client(0);
    on_first.login(sender).await;
    let on_second = stack.edge_client(1);
    on_second.login(sender).await;
    let reader = stack.edge_client(1);
    reader.login(listener).await;
    let mut sse = reader.sse(profile).await;
    sse.next_of_type("ready").await;

    let mut ws = on_first.ws(profile).await;
    ws.next_of_type("ready").await;
    let frame = json!({"type": "send", "body": "once", "ref": "a", "idempotency_key": "k-1"});
    ws.send(&frame).await;
    let first = ws.next_of_type("ack").await["id"].clone();
    ws.send(&frame).await;
    assert_eq!(
        ws.next_of_type("ack").await["id"],
        first,
        "a retry on the same socket"
    );
    let retried = on_second
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "once", "idempotency_key": "k-1"}),
        )
        .await;
    assert_eq!(retried.status(), 200);
    let retried: serde_json::Value = retried.json().await.expect("json");
    assert_eq!(retried["id"], first, "a retry on another edge, over POST");

    // Another send after the retries: everything before it has arrived
    // by the time it does (one sender, one partition, one order).
    let marker = on_second
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "after"}),
        )
        .await;
    assert_eq!(marker.status(), 200);
    let mut bodies = Vec::new();
    loop {
        let event = sse.next_of_type("message").await;
        let body = event.data["body"].as_str().unwrap_or_default().to_owned();
        if body == "after" {
            break;
        }
        assert_eq!(event.data["id"], first);
        bodies.push(body);
    }
    assert_eq!(bodies, ["once"], "delivered once");
    let history = format!("/api/profiles/{profile}/messages");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stored = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "history did not catch up in 30 s"
        );
        let page: serde_json::Value = stack
            .server()
            .get(&history)
            .await
            .json()
            .await
            .expect("json");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|m| m["body"] == "after") {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let once = stored.iter().filter(|m| m["body"] == "once").count();
    assert_eq!(once, 1, "stored once: {stored:?}");

    // Keys are per user; a malformed key is refused.
    let other = stack.edge_client(0);
    other.login(listener).await;
    let theirs = other
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "mine", "idempotency_key": "k-1"}),
        )
        .await;
    let theirs: serde_json::Value = theirs.json().await.expect("json");
    assert_ne!(theirs["id"], first, "another user's key is their own");
    let bad = other
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "x", "idempotency_key": "has space"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let bad: serde_json::Value = bad.json().await.expect("json");
    assert_eq!(bad["error"], "bad_idempotency_key");
}
