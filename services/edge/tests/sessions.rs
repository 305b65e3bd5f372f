//! Live sessions across the cluster: one per user and profile (a Redis lock,
//! over one server or a majority of three), launched profiles and presence,
//! heartbeats, the maximum lifetime, availability.

use std::time::Duration;

use rill_testkit::redis::Redis;
use rill_testkit::stack::{edge_settings, start_edge};
use rill_testkit::traefik::Traefik;
use rill_testkit::{Client, Stack, test_token};
use serde_json::{Value, json};
use uuid::Uuid;

async fn logged_in(client: Client, user: Uuid) -> Client {
    client.login(user).await;
    client
}

/// The profiles `user` has live sessions on, sorted, as the api answers.
async fn launched(stack: &Stack, user: Uuid) -> Vec<String> {
    let body: Value = stack
        .server()
        .get(&format!("/api/users/{user}/launched"))
        .await
        .json()
        .await
        .expect("json");
    let mut ids: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p.as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_of_the_same_user_and_profile_is_refused_on_any_edge() {
    let stack = Stack::start_with(2, |s| s.lock_wait_ms = Duration::from_millis(200)).await;
    let room = stack.create_profile("Room").await;
    let user = stack.member_of(&[room]).await;
    let first = logged_in(stack.edge_client(0), user).await;
    let mut ws = first.ws(room).await;
    ws.next_of_type("ready").await;

    for n in 0..2 {
        let other = logged_in(stack.edge_client(n), user).await;
        let (status, body) = other
            .try_sse(&format!("/live/{room}/sse"), &[])
            .await
            .expect_err("a second SSE stream is refused");
        assert_eq!(status, 409, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(body["error"], "already_live");

        let mut second = other.ws(room).await;
        assert_eq!(second.next_of_type("error").await["code"], "already_live");
        let close = second.closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 4409, "the documented close code");
    }

    // The user's other profiles are not affected.
    let elsewhere = stack.create_profile("Elsewhere").await;
    stack.bind(user, elsewhere).await;
    first.sse(elsewhere).await.next_of_type("ready").await;

    // A clean close releases the lock at once.
    drop(ws);
    let again = logged_in(stack.edge_client(1), user).await;
    let mut sse = again.sse(room).await;
    assert_eq!(sse.next_of_type("ready").await.data["edge_id"], "edge-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_need_a_majority_of_three_redis_servers() {
    let stack = Stack::start(1).await;
    let servers = [Redis::start(), Redis::start(), Redis::start()];
    let mut settings = edge_settings(&stack.broker, &stack.redis, &stack.store, 9);
    settings.redis.urls = servers.iter().map(Redis::url).collect();
    settings.redis.timeout_ms = Duration::from_millis(200);
    let edge = start_edge(settings).await;
    let [a, b, c] = servers;
    let profiles = [
        stack.create_profile("One").await,
        stack.create_profile("Two").await,
        stack.create_profile("Three").await,
    ];
    let user = stack.member_of(&profiles).await;
    // A connection token: its check needs no Redis, so what is refused
    // below is the lock, not the login.
    let client = Client::new(&edge.url()).with_token(&test_token(user));

    let mut all_up = client.sse(profiles[0]).await;
    all_up.next_of_type("ready").await;

    drop(a); // killed
    let mut one_down = client.sse(profiles[1]).await;
    one_down.next_of_type("ready").await;
    let refused = client
        .try_sse(&format!("/live/{}/sse", profiles[0]), &[])
        .await;
    assert_eq!(
        refused.err().map(|(status, _)| status),
        Some(409),
        "the lock taken on three servers still holds on two"
    );

    drop(b); // killed: one of three left
    let (status, body) = client
        .try_sse(&format!("/live/{}/sse", profiles[2]), &[])
        .await
        .expect_err("one server of three must not grant a lock");
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["error"], "locks_unavailable");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launched_profiles_and_presence_follow_sessions_across_edges() {
    let stack = Stack::start(2).await;
    let room = stack.create_profile("Room").await;
    let quiet = stack.create_profile("Quiet").await;
    let ada = stack.member_of(&[room, quiet]).await;
    let bob = stack.member_of(&[room]).await;
    let ada_client = logged_in(stack.edge_client(0), ada).await;
    let bob_client = logged_in(stack.edge_client(1), bob).await;

    let mut ada_ws = ada_client.ws(room).await;
    let presence = ada_ws.next_of_type("presence").await;
    assert_eq!(presence["users"], json!([ada.to_string()]));
    let _ada_quiet = ada_client.sse(quiet).await;

    let mut both = vec![room.to_string(), quiet.to_string()];
    both.sort();
    assert_eq!(launched(&stack, ada).await, both);

    let mut bob_sse = bob_client.sse(room).await;
    let snapshot = bob_sse.next_of_type("presence").await.data;
    let mut users: Vec<&str> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u.as_str().expect("id"))
        .collect();
    users.sort();
    let mut expected = [ada.to_string(), bob.to_string()];
    expected.sort();
    assert_eq!(users, expected, "a new session gets who is there");
    loop {
        // Ada's own join comes first.
        let join = ada_ws.next_of_type("join").await;
        if join["user_id"] == bob.to_string() {
            break; // from the other edge
        }
        assert_eq!(join["user_id"], ada.to_string());
    }

    drop(bob_sse);
    let leave = ada_ws.next_of_type("leave").await;
    assert_eq!(leave["user_id"], bob.to_string());
    assert!(
        launched(&stack, bob).await.is_empty(),
        "bob has nothing open now"
    );
}

/// A drain closes every session at once: their locks and registry entries
/// are released (in batches) before the edge exits, not left to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_edge_releases_the_locks_and_entries_of_all_its_sessions() {
    let mut stack = Stack::start_with(2, |s| s.lock_wait_ms = Duration::from_millis(200)).await;
    let room = stack.create_profile("Room").await;
    let mut users = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..40 {
        let user = stack.member_of(&[room]).await;
        let mut ws = logged_in(stack.edge_client(0), user).await.ws(room).await;
        ws.next_of_type("ready").await;
        users.push(user);
        sockets.push(ws);
    }
    assert_eq!(launched(&stack, users[0]).await, [room.to_string()]);

    stack.edges[0].stop().await;
    for user in &users {
        assert!(
            launched(&stack, *user).await.is_empty(),
            "{user} unregistered"
        );
    }
    // Each lock is free: the same pairs open at once on the other edge
    // (a held lock would make them wait 200 ms, then refuse them).
    for user in users {
        let mut ws = logged_in(stack.edge_client(1), user).await.ws(room).await;
        ws.next_of_type("ready").await;
    }
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_idle_sessions_through_traefik_and_end_silent_clients() {
    let stack = Stack::start_with(1, |s| {
        s.heartbeat.interval_secs = Duration::from_secs(1);
        s.heartbeat.timeout_secs = Duration::from_secs(1);
    })
    .await;
    let traefik = Traefik::start_with_env(
        &[stack.edges[0].addr],
        stack.api,
        &[("RILL_TRAEFIK_IDLE_TIMEOUT", "1s")],
    )
    .await;
    let room = stack.create_profile("Room").await;
    let (ws_user, sse_user) = (
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
    );
    let ws_client = logged_in(Client::new(&traefik.url()), ws_user).await;
    let sse_client = logged_in(Client::new(&traefik.url()), sse_user).await;
    let mut ws = ws_client.ws(room).await;
    ws.next_of_type("presence").await;
    let mut sse = sse_client.sse(room).await;
    sse.next_of_type("presence").await;

    // Idle for several idle timeouts: pings (which the client answers, as
    // browsers do) and comments flow, and the sessions still deliver.
    let idle_until = std::time::Instant::now() + Duration::from_secs(4);
    let mut pings = 0;
    while std::time::Instant::now() < idle_until {
        ws.next_ping().await;
        pings += 1;
    }
    assert!(pings >= 3, "a ping a second: {pings}");
    sse_client
        .post_json(
            &format!("/live/{room}/messages"),
            &json!({"body": "still there?"}),
        )
        .await;
    assert_eq!(ws.next_of_type("message").await["body"], "still there?");
    assert_eq!(
        sse.next_of_type("message").await.data["body"],
        "still there?"
    );
    assert!(sse.comments >= 2, "heartbeat comments: {}", sse.comments);
    drop((ws, sse));

    // A client that stops answering (it never reads, so never pongs) is
    // closed after interval + timeout, and its lock is released: the same
    // user gets in again.
    let silent_user = stack.member_of(&[room]).await;
    let silent = logged_in(stack.edge_client(0), silent_user).await;
    let stalled = silent.ws(room).await;
    // Refused ("already live") until the edge has closed the silent one.
    let since = std::time::Instant::now();
    loop {
        let mut back = silent.ws(room).await;
        match back.next_or_close().await {
            Ok(event) if event["type"] == "ready" => break,
            other => assert!(
                since.elapsed() < Duration::from_secs(60),
                "the silent client's pair is still taken: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
    let metrics = stack
        .edge_client(0)
        .get("/metrics")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"rill_edge_sessions_ended_total{reason="heartbeat_timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_lifetime_is_told_to_reconnect() {
    let stack = Stack::start_with(1, |s| {
        s.lifetime.max_secs = Duration::from_secs(1);
        s.lifetime.dither_secs = Duration::from_secs(1);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let client = logged_in(stack.edge_client(0), stack.member_of(&[room]).await).await;
    let started = std::time::Instant::now();
    let mut ws = client.ws(room).await;
    let reconnect = ws.next_of_type("reconnect").await;
    let lived = started.elapsed();
    assert_eq!(reconnect["reason"], "lifetime");
    assert!(reconnect["after_ms"].as_u64().is_some());
    assert!(
        lived >= Duration::from_secs(1) && lived < Duration::from_millis(2500),
        "lifetime 1 s plus up to 1 s of dither, was {lived:?}"
    );
    let close = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_turns_not_ready_at_warning_and_refuses_at_critical() {
    let stack = Stack::start_with(1, |s| {
        s.limits.max_connections = 4;
        s.availability.warning_percent = 50;
        s.availability.critical_percent = 100;
    })
    .await;
    let edge = stack.edge_client(0);
    let profiles: Vec<Uuid> = {
        let mut ids = Vec::new();
        for name in ["A", "B", "C", "D", "E"] {
            ids.push(stack.create_profile(name).await);
        }
        ids
    };
    let user = stack.member_of(&profiles).await;
    edge.login(user).await;
    let ready = || async { edge.get("/readyz").await.status().as_u16() };

    assert_eq!(ready().await, 200);
    let mut open = Vec::new();
    open.push(edge.sse(profiles[0]).await);
    assert_eq!(ready().await, 200, "1 of 4: available");
    open.push(edge.sse(profiles[1]).await);
    assert_eq!(ready().await, 503, "2 of 4: warning, not ready");
    assert_eq!(edge.metric("rill_edge_availability").await, 1.0);
    open.push(edge.sse(profiles[2]).await);
    open.push(edge.sse(profiles[3]).await);
    assert_eq!(
        edge.metric("rill_edge_live_sessions").await,
        4.0,
        "what the autoscaler reads"
    );
    let refused = edge.get(&format!("/live/{}/sse", profiles[4])).await;
    assert_eq!(refused.status(), 503, "critical: refused");
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(edge.metric("rill_edge_availability").await, 2.0);

    // The edge notices the closed streams when it next writes to them (a
    // heartbeat comment at the latest): ready again then.
    open.truncate(1);
    let since = std::time::Instant::now();
    while ready().await != 200 {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "not ready again after three of four streams closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(edge.metric("rill_edge_availability").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_past_max_presence_users_gets_a_truncated_list_and_no_joins() {
    let stack = Stack::start_with(1, |s| s.limits.max_presence_users = 2).await;
    let room = stack.create_profile("Room").await;
    let (ada, bob, cy, dee) = (
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
        stack.member_of(&[room]).await,
    );
    let mut ada_ws = logged_in(stack.edge_client(0), ada).await.ws(room).await;
    let presence = ada_ws.next_of_type("presence").await;
    assert_eq!(presence["users"], json!([ada.to_string()]));
    assert_eq!(presence["truncated"], json!(false));

    // Two sessions: at the limit, presence as usual.
    let mut bob_ws = logged_in(stack.edge_client(0), bob).await.ws(room).await;
    let presence = bob_ws.next_of_type("presence").await;
    assert_eq!(presence["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(presence["truncated"], json!(false));
    // Both joins (Ada's own, Bob's) reach Ada, in either order: they are
    // keyed by user, so on two partitions.
    let mut joined = std::collections::HashSet::new();
    while joined.len() < 2 {
        let join = ada_ws.next_of_type("join").await;
        joined.insert(join["user_id"].as_str().expect("user id").to_owned());
    }
    assert_eq!(
        joined,
        [ada.to_string(), bob.to_string()].into_iter().collect()
    );

    // Past it: the newcomer sees two users, itself first, and that there
    // are more; nobody gets a join for the third or fourth session.
    let mut cy_ws = logged_in(stack.edge_client(0), cy).await.ws(room).await;
    let presence = cy_ws.next_of_type("presence").await;
    assert_eq!(presence["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(presence["users"][0], json!(cy.to_string()));
    assert_eq!(presence["truncated"], json!(true));
    let mut dee_ws = logged_in(stack.edge_client(0), dee).await.ws(room).await;
    dee_ws.next_of_type("presence").await;
    dee_ws
        .send(&json!({"type": "send", "body": "after the joins", "ref": "r1"}))
        .await;
    loop {
        let event = ada_ws.next_event().await;
        match event["type"].as_str() {
            Some("message") => break,
            Some("join") => panic!("a join past the limit: {event}"),
            _ => {}
        }
    }
    let skipped = stack
        .edge_client(0)
        .metric("rill_edge_presence_events_skipped_total")
        .await;
    assert!(
        skipped >= 2.0,
        "the joins of cy and dee were skipped: {skipped}"
    );
}
