//! Bad input gets a clear error and breaks nothing.

use std::time::{Duration, Instant};

use rill_testkit::{Client, Stack};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use uuid::Uuid;

/// A client logged in as a member of a new profile, and that profile.
async fn logged_in(stack: &Stack) -> (Client, Uuid) {
    let profile = stack.create_profile("Room").await;
    let client = stack.client();
    client.login(stack.member_of(&[profile]).await).await;
    (client, profile)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cookie_and_forged_cookies_get_401_everywhere() {
    let stack = Stack::start(1).await;
    let anonymous = stack.client();
    let forged = stack.client();
    forged.set_cookie(
        "rill_session",
        &format!("v1.{}.99999999999", Uuid::new_v4()),
    );
    let (tampered, profile) = logged_in(&stack).await;
    let real = tampered.cookie("rill_session").expect("session cookie");
    tampered.set_cookie("rill_session", &real.replacen('v', "w", 1));

    for (who, client) in [
        ("no cookie", &anonymous),
        ("forged", &forged),
        ("tampered", &tampered),
    ] {
        let sse = client.get(&format!("/live/{profile}/sse")).await;
        assert_eq!(sse.status(), 401, "SSE with {who}");
        let body: serde_json::Value = sse.json().await.expect("json error");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|c| c.ends_with("session")),
            "{body}"
        );

        let post = client
            .post_json(&format!("/live/{profile}/messages"), &json!({"body": "x"}))
            .await;
        assert_eq!(post.status(), 401, "POST with {who}");

        let ws = client.try_ws(&format!("/live/{profile}/ws"), &[]).await;
        assert_eq!(
            ws.err().map(|(status, _)| status),
            Some(401),
            "WebSocket with {who}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_websocket_frames_get_errors_and_the_session_goes_on() {
    let stack = Stack::start(1).await;
    let (client, profile) = logged_in(&stack).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;

    ws.send(&json!({"type": "send", "body": "x".repeat(5000), "ref": "big"}))
        .await;
    let error = ws.next_of_type("error").await;
    assert_eq!(error["code"], "message_too_large");
    assert_eq!(error["ref"], "big");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("4096")),
        "{error}"
    );

    ws.send_text("{not json").await;
    assert_eq!(ws.next_of_type("error").await["code"], "bad_json");
    ws.send(&json!({"type": "shout"})).await;
    assert_eq!(ws.next_of_type("error").await["code"], "bad_json");
    ws.send(&json!({"type": "send", "body": "   "})).await;
    assert_eq!(ws.next_of_type("error").await["code"], "invalid_body");
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.next_of_type("error").await["code"], "binary_frame");

    ws.send(&json!({"type": "send", "body": "still here", "ref": "ok"}))
        .await;
    assert_eq!(ws.next_of_type("ack").await["ref"], "ok");
    assert_eq!(ws.next_of_type("message").await["body"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_past_the_frame_limit_closes_with_1009() {
    let stack = Stack::start(1).await;
    let (client, profile) = logged_in(&stack).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;
    ws.send_text(&"x".repeat(70_000)).await;
    let close = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
}

/// The edge frames WebSocket messages itself (transport/websocket/frame.rs):
/// what a real client does beyond one text frame per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_fragments_and_close_are_answered_as_rfc_6455_says() {
    let stack = Stack::start(1).await;
    let (client, profile) = logged_in(&stack).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;

    ws.send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;
    assert_eq!(ws.next_pong().await, b"are you there");

    let send = json!({"type": "send", "body": "in three parts", "ref": "frag"}).to_string();
    let (a, rest) = send.split_at(10);
    let (b, c) = rest.split_at(10);
    let text = OpCode::Data(Data::Text);
    let more = OpCode::Data(Data::Continue);
    ws.send_message(Message::Frame(Frame::message(a.to_owned(), text, false)))
        .await;
    ws.send_message(Message::Ping(Vec::new().into())).await;
    ws.send_message(Message::Frame(Frame::message(b.to_owned(), more, false)))
        .await;
    ws.send_message(Message::Frame(Frame::message(c.to_owned(), more, true)))
        .await;
    assert_eq!(ws.next_of_type("ack").await["ref"], "frag");
    assert_eq!(ws.next_of_type("message").await["body"], "in three parts");

    ws.send_message(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await;
    let close = ws.closed().await.expect("the close answered");
    assert_eq!(u16::from(close.code), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_protocol_errors_close_with_1002_and_text_not_utf8_with_1007() {
    let stack = Stack::start(1).await;
    let mut reserved = Frame::message("{}", OpCode::Data(Data::Text), true);
    reserved.header_mut().rsv1 = true;
    let not_utf8 = Frame::message(vec![0xC3, 0x28], OpCode::Data(Data::Text), true);
    for (frame, code) in [(reserved, 1002), (not_utf8, 1007)] {
        let (client, profile) = logged_in(&stack).await;
        let mut ws = client.ws(profile).await;
        ws.next_of_type("ready").await;
        ws.send_message(Message::Frame(frame)).await;
        let close = ws.closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_sends_get_clear_errors() {
    let stack = Stack::start(1).await;
    let (client, profile) = logged_in(&stack).await;
    let path = format!("/live/{profile}/messages");

    let cases = [
        (
            client.post_raw(&path, "application/json", "{oops").await,
            400,
            "bad_json",
        ),
        (
            client
                .post_raw(&path, "text/plain", r#"{"body":"x"}"#)
                .await,
            415,
            "not_json",
        ),
        (
            client
                .post_json(&path, &json!({"body": "x".repeat(5000)}))
                .await,
            413,
            "message_too_large",
        ),
        (
            client.post_json(&path, &json!({"text": "x"})).await,
            400,
            "bad_json",
        ),
        (
            client
                .post_json("/live/not-a-uuid/messages", &json!({"body": "x"}))
                .await,
            400,
            "bad_id",
        ),
        (
            client
                .post_raw(&path, "application/json", "x".repeat(70_000))
                .await,
            413,
            "request_too_large",
        ),
        (
            client
                .post_json("/login/token", &json!({"token": "not-a-token"}))
                .await,
            401,
            "token_malformed",
        ),
        (
            client.post_json("/login", &json!({"user_id": "x"})).await,
            404,
            "not_found",
        ),
        (client.get("/no/such/route").await, 404, "not_found"),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status(), status, "expected {code}");
        let body: serde_json::Value = response.json().await.expect("errors are JSON");
        assert_eq!(body["error"], code);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let ok = client.post_json(&path, &json!({"body": "fine"})).await;
    assert_eq!(ok.status(), 200, "the client can still send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_websocket_upgrades_are_refused() {
    let stack = Stack::start(1).await;
    let (client, profile) = logged_in(&stack).await;
    let path = format!("/live/{profile}/ws");
    let refused = client
        .try_ws(&path, &[("origin", "http://evil.example")])
        .await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(403));
    let same_origin = format!("http://{}", stack.traefik.addr);
    assert!(
        client
            .try_ws(&path, &[("origin", &same_origin)])
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_sessions_get_503_with_retry_after() {
    let stack = Stack::start_with(1, |s| s.limits.max_connections = 1).await;
    let profile = stack.create_profile("Room").await;
    let client = stack.edge_client(0);
    client.login(stack.member_of(&[profile]).await).await;
    let mut first = client.ws(profile).await;
    first.next_of_type("ready").await;
    let refused = client.get(&format!("/live/{profile}/sse")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    drop(first);
    // The place frees once the server sees the close.
    for _ in 0..100 {
        if client.get(&format!("/live/{profile}/sse")).await.status() == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the freed place was never given to a new session");
}

/// Past `limits.sends_per_session` a WebSocket send gets `rate_limited`
/// with `retry_after_ms` and the session goes on; past
/// `limits.sends_per_user` a POST send gets 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_past_the_rate_limits_are_refused_and_the_session_goes_on() {
    let per_session = rill_runtime::rate_limit::Rate {
        // One token per 5 s: none comes back while the four sends are
        // read, even on a busy machine, and the WebSocket's pause after a
        // refusal stays within the client's wait for an event.
        per_second: 0.2,
        burst: 3,
    };
    let per_user = rill_runtime::rate_limit::Rate {
        per_second: 0.1,
        burst: 3,
    };
    let stack = Stack::start_with(1, |s| {
        s.limits.sends_per_session = per_session;
        s.limits.sends_per_user = per_user;
    })
    .await;
    let (client, profile) = logged_in(&stack).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;
    for n in 0..4 {
        ws.send(&json!({"type": "send", "body": format!("m{n}"), "ref": format!("r{n}")}))
            .await;
    }
    let mut acks = 0;
    let refused = loop {
        let event = ws.next_event().await;
        match event["type"].as_str() {
            Some("ack") => acks += 1,
            Some("error") => break event,
            _ => {}
        }
    };
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["ref"], "r3", "the fourth send is the one refused");
    let refused_at = Instant::now();
    let wait = refused["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 5_000, "{wait}");
    // The socket is not read again until a token is back: a ping sent now
    // is answered no sooner than that, and the next send is taken.
    ws.send(&json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    let paused = refused_at.elapsed();
    assert!(
        paused >= Duration::from_millis(wait / 2),
        "the socket was read again after {paused:?}, the refusal said {wait} ms"
    );
    ws.send(&json!({"type": "send", "body": "m4", "ref": "r4"}))
        .await;
    while acks < 4 {
        let ack = ws.next_of_type("ack").await;
        assert_ne!(ack["ref"], "r3", "the refused send was not sent");
        acks += 1;
    }
    let metrics = stack.edge_client(0);
    assert_eq!(metrics.metric("rill_edge_sends_refused").await, 1.0);

    let path = format!("/live/{profile}/messages");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client.post_json(&path, &json!({"body": "post"})).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after: u64 = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            assert!((1..=10).contains(&retry_after), "{retry_after}");
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["error"], "rate_limited");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(metrics.metric("rill_edge_sends_refused").await, 2.0);
}
