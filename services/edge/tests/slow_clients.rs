//! Slow clients: a bounded queue per session, drops with a `gap`, and a
//! client that stays too slow is disconnected. The edge's queued bytes stay
//! bounded whatever the clients do.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rill_testkit::Stack;
use serde_json::json;

const STALLED: usize = 100;
const QUEUE_DEPTH: usize = 32;
const BODY_BYTES: usize = 4000;
const SLOW_CLIENT: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_under_a_flood_leave_queued_bytes_bounded_and_are_disconnected() {
    // Long enough that the flood fills the queues before the stalled
    // clients are cut off, even when a busy machine delivers it slowly (at
    // 2 s, a CI run under load cut them off first, and nothing dropped).
    let stack = Stack::start_with(1, |s| {
        s.limits.session_queue_depth = QUEUE_DEPTH;
        s.limits.slow_client_secs = SLOW_CLIENT;
    })
    .await;
    let room = stack.create_profile("Room").await;
    let rooms = [room];
    let users = join_all((0..STALLED).map(|_| stack.member_of(&rooms))).await;

    // Clients that open a WebSocket and never read from it again, with
    // small socket buffers (the kernel would otherwise absorb megabytes
    // for each before the edge notices).
    let mut stalled = Vec::new();
    for user in users {
        let client = stack.edge_client(0);
        client.login(user).await;
        stalled.push(client.ws_with_receive_buffer(room, 8 * 1024).await);
    }
    let edge = stack.edge_client(0);
    assert_eq!(edge.metric("rill_edge_live_sessions").await, STALLED as f64);

    // The flood: 2,000 messages of 4 KB, far more than the sockets' kernel
    // buffers and the queues hold.
    let sender = stack.edge_client(0);
    sender.login(stack.member_of(&[room]).await).await;
    let body = "x".repeat(BODY_BYTES);
    let flood = {
        let sender = sender.clone();
        tokio::spawn(async move {
            let send = |n: usize| {
                let (sender, body) = (sender.clone(), body.clone());
                async move {
                    for _ in 0..250 {
                        let reply = sender
                            .post_json(&format!("/live/{room}/messages"), &json!({ "body": body }))
                            .await;
                        assert_eq!(reply.status(), 200, "sender {n}");
                    }
                }
            };
            join_all((0..8).map(send)).await;
        })
    };

    // Sample the queued bytes while the flood goes out and is delivered.
    let mut most_queued = 0.0_f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delivered_at = None;
    loop {
        assert!(Instant::now() < deadline, "the flood was not delivered");
        most_queued = most_queued.max(edge.metric("rill_edge_queued_bytes").await);
        let consumed = edge.metric("rill_edge_records_consumed").await;
        if flood.is_finished() && consumed >= 2000.0 && delivered_at.is_none() {
            delivered_at = Some(Instant::now());
        }
        if delivered_at.is_some_and(|at| at.elapsed() > Duration::from_millis(500)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flood.await.expect("flood");

    // Each queue holds at most QUEUE_DEPTH events of a bit over BODY_BYTES.
    let bound = (STALLED * QUEUE_DEPTH * (BODY_BYTES + 300)) as f64;
    eprintln!("most queued: {most_queued} bytes (bound {bound})");
    assert!(most_queued > 0.0, "the metric moved");
    assert!(
        most_queued <= bound,
        "queued {most_queued} bytes, bound {bound}"
    );
    assert!(
        edge.metric("rill_edge_dropped_events").await > 0.0,
        "the flood overflowed the queues"
    );

    // Too slow for longer than slow_client_secs: disconnected, and what
    // was queued for them is let go.
    let deadline = Instant::now() + SLOW_CLIENT + Duration::from_secs(30);
    loop {
        let ended = edge.metric("rill_edge_sessions_ended").await;
        if ended >= STALLED as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ended} of {STALLED} stalled sessions ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ended as too slow by the edge, or cut off by the kernel first (the
    // sockets' user timeout is slow_client_secs too): nothing else.
    let text = edge.get("/metrics").await.text().await.expect("text");
    let ended = |reason: &str| {
        let line = format!(r#"rill_edge_sessions_ended_total{{reason="{reason}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map_or(0.0, |v| v.trim().parse::<f64>().expect("a number"))
    };
    assert_eq!(
        ended("too_slow") + ended("closed"),
        STALLED as f64,
        "{text}"
    );
    assert_eq!(edge.metric("rill_edge_live_sessions").await, 0.0);
    assert_eq!(edge.metric("rill_edge_queued_bytes").await, 0.0);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sse_client_is_cut_off_and_its_lock_released() {
    let stack = Stack::start_with(1, |s| {
        s.limits.session_queue_depth = QUEUE_DEPTH;
        s.limits.slow_client_secs = Duration::from_secs(2);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let user = stack.member_of(&[room]).await;
    let client = stack.edge_client(0);
    client.login(user).await;
    // Reads the response head, then nothing: its window shuts once the
    // events fill a small receive buffer.
    let stalled = client.stalled_sse(room, 4 * 1024).await;
    let edge = stack.edge_client(0);
    assert_eq!(edge.metric("rill_edge_live_sessions").await, 1.0);

    let sender = stack.edge_client(0);
    sender.login(stack.member_of(&[room]).await).await;
    let body = "x".repeat(BODY_BYTES);
    for _ in 0..200 {
        let reply = sender
            .post_json(&format!("/live/{room}/messages"), &json!({ "body": body }))
            .await;
        assert_eq!(reply.status(), 200);
    }

    // The kernel cuts the stalled stream after slow_client_secs with its
    // window shut; the session ends and its lock goes: the user can open
    // the profile again (409 already_live until then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.try_sse(&format!("/live/{room}/sse"), &[]).await {
            Ok(_) => break,
            Err((409, _)) => {
                assert!(
                    Instant::now() < deadline,
                    "the stalled stream still holds the lock"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err((status, body)) => panic!("SSE refused: {status} {body}"),
        }
    }
    drop(stalled);
}
