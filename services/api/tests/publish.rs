//! Server-side publish through Kafka to a profile's or a user's live
//! sessions on every edge, the count of sessions addressed, and the
//! profiles a user has launched.

use rill_testkit::Stack;
use serde_json::{Value, json};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_live_session_it_names() {
    let stack = Stack::start(2).await;
    let (room, other) = (
        stack.create_profile("Room").await,
        stack.create_profile("Other").await,
    );
    let ada = stack.member_of(&[room, other]).await;
    let bob = stack.member_of(&[room]).await;
    let (ada_1, ada_2, bob_2) = (
        stack.edge_client(0),
        stack.edge_client(1),
        stack.edge_client(1),
    );
    ada_1.login(ada).await;
    ada_2.login(ada).await;
    bob_2.login(bob).await;
    let mut ada_room = ada_1.ws(room).await;
    ada_room.next_of_type("ready").await;
    let mut ada_other = ada_2.sse(other).await;
    ada_other.next_of_type("ready").await;
    let mut bob_room = bob_2.ws(room).await;
    bob_room.next_of_type("ready").await;
    let api = stack.server();

    let launched = body(api.get(&format!("/api/users/{ada}/launched")).await).await;
    let mut ids: Vec<&str> = launched["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ids.sort();
    let mut expected = [room.to_string(), other.to_string()];
    expected.sort();
    assert_eq!(ids, expected);

    let to_room = api
        .post_json(
            &format!("/api/profiles/{room}/publish"),
            &json!({"event": "notice", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(to_room.status(), 202);
    assert_eq!(
        body(to_room).await["sessions"],
        2,
        "Ada and Bob are live on the room"
    );
    for ws in [&mut ada_room, &mut bob_room] {
        let push = ws.next_of_type("push").await;
        assert_eq!(
            (push["event"].as_str(), push["data"]["n"].as_i64()),
            (Some("notice"), Some(1))
        );
    }

    let to_ada = api
        .post_json(
            &format!("/api/users/{ada}/publish"),
            &json!({"event": "dm", "data": "hi"}),
        )
        .await;
    assert_eq!(to_ada.status(), 202);
    assert_eq!(
        body(to_ada).await["sessions"],
        2,
        "Ada has two profiles open"
    );
    assert_eq!(ada_room.next_of_type("push").await["data"], "hi");
    assert_eq!(ada_other.next_of_type("push").await.data["event"], "dm");
    // Bob was not addressed: the next push he sees is the next one to the room.
    api.post_json(
        &format!("/api/profiles/{room}/publish"),
        &json!({"event": "second", "data": null}),
    )
    .await;
    assert_eq!(bob_room.next_of_type("push").await["event"], "second");

    drop(ada_room);
    drop(ada_other);
    for _ in 0..100 {
        let launched = body(api.get(&format!("/api/users/{ada}/launched")).await).await;
        if launched["items"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("closed sessions are still listed as launched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_get_clear_errors() {
    let stack = Stack::start(1).await;
    let room = stack.create_profile("Room").await;
    let api = stack.server();
    let path = format!("/api/profiles/{room}/publish");
    let ghost = uuid::Uuid::new_v4();
    let big = "x".repeat(20_000);
    let cases = [
        (
            api.post_json(&path, &json!({"event": "", "data": 1})).await,
            400,
            "validation_failed",
        ),
        (
            api.post_json(&path, &json!({"event": "has space", "data": 1}))
                .await,
            400,
            "validation_failed",
        ),
        (
            api.post_json(&path, &json!({"event": "x"})).await,
            400,
            "bad_json",
        ),
        (
            api.post_json(&path, &json!({"event": "x", "data": big}))
                .await,
            400,
            "over_limit",
        ),
        (
            api.post_json(
                &format!("/api/profiles/{ghost}/publish"),
                &json!({"event": "x", "data": 1}),
            )
            .await,
            404,
            "not_found",
        ),
        (
            api.post_json(
                &format!("/api/users/{ghost}/publish"),
                &json!({"event": "x", "data": 1}),
            )
            .await,
            404,
            "not_found",
        ),
        (
            api.get(&format!("/api/users/{ghost}/launched")).await,
            404,
            "not_found",
        ),
        (api.get("/api/users/nope/launched").await, 400, "bad_id"),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(body(response).await["error"], code);
    }
}
