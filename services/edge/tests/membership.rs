//! Only members of a profile may open its streams or send to it, and an
//! unbind (or a deleted profile) ends the user's live sessions.

use std::time::Duration;

use rill_testkit::Stack;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_get_403_and_unknown_profiles_404() {
    let stack = Stack::start(1).await;
    let room = stack.create_profile("Room").await;
    let outsider = stack.create_user("Outsider").await;
    let client = stack.client();
    client.login(outsider).await;
    for profile in [room, Uuid::new_v4()] {
        let (status, code) = if profile == room {
            (403, "not_a_member")
        } else {
            (404, "unknown_profile")
        };
        let sse = client.get(&format!("/live/{profile}/sse")).await;
        assert_eq!(sse.status(), status);
        let body: serde_json::Value = sse.json().await.expect("json");
        assert_eq!(body["error"], code);
        let post = client
            .post_json(&format!("/live/{profile}/messages"), &json!({"body": "hi"}))
            .await;
        assert_eq!(post.status(), status);
        let ws = client.try_ws(&format!("/live/{profile}/ws"), &[]).await;
        assert_eq!(ws.err().map(|(s, _)| s), Some(status));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbind_closes_the_users_live_sessions_on_every_edge() {
    let stack = Stack::start(2).await;
    let room = stack.create_profile("Room").await;
    let other = stack.create_profile("Other").await;
    let user = stack.member_of(&[room, other]).await;
    let stayer = stack.member_of(&[room]).await;

    let on_edge = |n: usize, who: Uuid| {
        let client = stack.edge_client(n);
        async move {
            client.login(who).await;
            client
        }
    };
    let c1 = on_edge(0, user).await;
    let c2 = on_edge(1, user).await;
    // Edge 1 learns the membership (and caches it), then the session moves
    // to edge 0: one live session per user and profile.
    let mut sse = c2.sse(room).await;
    sse.next_of_type("ready").await;
    drop(sse);
    let mut ws = c1.ws(room).await;
    ws.next_of_type("ready").await;
    let mut elsewhere = c1.ws(other).await;
    elsewhere.next_of_type("ready").await;
    let staying = on_edge(0, stayer).await;
    let mut stays = staying.ws(room).await;
    stays.next_of_type("ready").await;

    let unbound = stack
        .server()
        .delete(&format!("/api/profiles/{room}/members/{user}"))
        .await;
    assert_eq!(unbound.status(), 204);

    let error = ws.next_of_type("error").await;
    assert_eq!(error["code"], "not_a_member");
    let close = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4403);
    // Edge 1 dropped its cached membership at the unbind event, not at the
    // cache's expiry.
    let refused = c2.get(&format!("/live/{room}/sse")).await;
    assert_eq!(refused.status(), 403);

    // Other sessions go on: the user's on another profile, others' on this one.
    c1.post_json(
        &format!("/live/{other}/messages"),
        &json!({"body": "still here"}),
    )
    .await;
    assert_eq!(
        elsewhere.next_of_type("message").await["body"],
        "still here"
    );
    staying
        .post_json(
            &format!("/live/{room}/messages"),
            &json!({"body": "me too"}),
        )
        .await;
    assert_eq!(stays.next_of_type("message").await["body"], "me too");

    // And the unbound user can no longer come back (once the edge has the
    // unbind: it ended the session already, so at once).
    let since = std::time::Instant::now();
    loop {
        let again = c1.get(&format!("/live/{room}/sse")).await;
        if again.status() == 403 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the unbound user still gets {}",
            again.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_profile_ends_its_sessions() {
    let stack = Stack::start(1).await;
    let room = stack.create_profile("Room").await;
    let client = stack.client();
    client.login(stack.member_of(&[room]).await).await;
    let mut ws = client.ws(room).await;
    ws.next_of_type("ready").await;
    assert_eq!(
        stack
            .server()
            .delete(&format!("/api/profiles/{room}"))
            .await
            .status(),
        204
    );
    assert_eq!(ws.next_of_type("error").await["code"], "not_a_member");
    assert_eq!(ws.closed().await.map(|c| u16::from(c.code)), Some(4403));
}
