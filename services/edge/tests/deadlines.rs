//! Read deadlines (issue 16.2): a client that sends its request headers
//! byte by byte (slowloris) is cut off, so is one whose request body stops
//! short, an idle keep-alive connection is closed, and a WebSocket message
//! left unfinished closes its connection, pings or not; the legitimate
//! client beside them is served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rill_testkit::{Client, Stack};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// How long a test waits for what a deadline of a few seconds must do, on
/// a machine shared with the whole suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// Whether the server closed `tcp`: reads what it sends (a response) until
/// end of file or an error, for at most `wait`.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read_all).await.is_ok()
}

/// `GET /healthz` on `tcp`, and its whole answer (`ok`, with a length).
async fn health_on(tcp: &mut TcpStream, addr: SocketAddr) -> String {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(answer).expect("text")
}

/// A client logged in (on edge 0) as a new member of `room`.
async fn member(stack: &Stack, room: uuid::Uuid) -> Client {
    let client = stack.edge_client(0);
    client.login(stack.member_of(&[room]).await).await;
    client
}

/// Edge 0's `/metrics` text.
async fn metrics_text(stack: &Stack) -> String {
    let response = stack.edge_client(0).get("/metrics").await;
    response.text().await.expect("text")
}

fn expired(metrics: &str, reason: &str) -> f64 {
    let line = format!(r#"rill_edge_connections_expired_total{{reason="{reason}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_headers_too_slowly_is_cut_off() {
    let stack = Stack::start_with(1, |s| {
        s.limits.header_read_timeout_secs = Duration::from_secs(1);
    })
    .await;
    let addr = stack.edges[0].addr;
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let header = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Padding: ");
    let started = Instant::now();
    let mut cut_off = false;
    // A byte every 300 ms, for ever: the headers never end in time.
    for byte in header.bytes().chain(std::iter::repeat(b'a')) {
        if slow.write_all(&[byte]).await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut slow, Duration::from_millis(300)).await {
            cut_off = true;
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "still connected after {PATIENCE:?}"
        );
    }
    assert!(cut_off);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the deadline"
    );

    // A client that sends its request at once is served.
    let mut quick = TcpStream::connect(addr).await.expect("connect");
    assert!(
        health_on(&mut quick, addr)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let metrics = metrics_text(&stack).await;
    assert_eq!(expired(&metrics, "header_read_timeout"), 1.0, "{metrics}");
}

/// A request whose body stops short (a slow POST) is cut off
/// `limits.body_read_timeout_secs` after its headers: nothing waits on it
/// for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_sent_too_slowly_is_cut_off() {
    let stack = Stack::start_with(1, |s| {
        s.limits.body_read_timeout_secs = Duration::from_secs(1);
    })
    .await;
    let addr = stack.edges[0].addr;
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let profile = uuid::Uuid::new_v4();
    let head = format!(
        "POST /live/{profile}/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"body\": \"a"
    );
    slow.write_all(head.as_bytes()).await.expect("request");
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, PATIENCE).await,
        "a request with an unfinished body still open after {PATIENCE:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the deadline: {:?}",
        started.elapsed()
    );

    let mut quick = TcpStream::connect(addr).await.expect("connect");
    assert!(
        health_on(&mut quick, addr)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let metrics = metrics_text(&stack).await;
    assert_eq!(expired(&metrics, "body_read_timeout"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_deadline() {
    // The idle deadline is longer than the header deadline: a quiet
    // connection outlives the header deadline.
    let stack = Stack::start_with(1, |s| {
        s.limits.header_read_timeout_secs = Duration::from_secs(1);
        s.limits.idle_timeout_secs = Duration::from_secs(4);
    })
    .await;
    let addr = stack.edges[0].addr;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    assert!(health_on(&mut tcp, addr).await.starts_with("HTTP/1.1 200"));
    // Quiet for twice the header deadline: still open, and a request on it
    // is served (kept alive).
    assert!(
        !closed_within(&mut tcp, Duration::from_secs(2)).await,
        "closed before the idle deadline"
    );
    assert!(health_on(&mut tcp, addr).await.starts_with("HTTP/1.1 200"));
    // Then quiet for good: closed by the edge.
    let quiet_from = Instant::now();
    assert!(
        closed_within(&mut tcp, PATIENCE).await,
        "an idle connection still open after {PATIENCE:?}"
    );
    assert!(quiet_from.elapsed() >= Duration::from_secs(3));
    let metrics = metrics_text(&stack).await;
    assert!(expired(&metrics, "idle_timeout") >= 1.0, "{metrics}");
}

/// A stream in progress (SSE) owes no idle deadline, however quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_sse_stream_is_not_idle() {
    let stack = Stack::start_with(1, |s| {
        s.limits.idle_timeout_secs = Duration::from_secs(1);
        s.heartbeat.interval_secs = Duration::from_secs(60);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let client = stack.edge_client(0);
    client.login(stack.member_of(&[room]).await).await;
    let mut sse = client.sse(room).await;
    sse.next_of_type("ready").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sender = stack.edge_client(0);
    sender.login(stack.member_of(&[room]).await).await;
    let reply = sender
        .post_json(
            &format!("/live/{room}/messages"),
            &json!({"body": "still there?"}),
        )
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        sse.next_of_type("message").await.data["body"],
        "still there?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_left_unfinished_closes_with_1008_pings_or_not() {
    let stack = Stack::start_with(1, |s| {
        s.limits.fragment_timeout_secs = Duration::from_secs(5);
        // Pings every second, which the client answers all along.
        s.heartbeat.interval_secs = Duration::from_secs(1);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let parker = member(&stack, room).await;
    let mut parked = parker.ws(room).await;
    parked.next_of_type("ready").await;
    let first = Frame::message("{\"type\":\"se", OpCode::Data(Data::Text), false);
    parked.send_message(Message::Frame(first)).await;
    // Control frames go on between the parts: a ping is answered.
    parked
        .send_message(Message::Ping(b"here".to_vec().into()))
        .await;
    assert_eq!(parked.next_pong().await, b"here");
    let started = Instant::now();
    let close = parked.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "message not finished in time");
    assert!(started.elapsed() < PATIENCE);
    // Counted once the close handshake is over.
    let edge = stack.edge_client(0);
    let ended = r#"rill_edge_sessions_ended_total{reason="message_timeout"} 1"#;
    loop {
        let metrics = edge.get("/metrics").await.text().await.expect("text");
        if metrics.contains(ended) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another client on the edge is served.
    let mut fine = member(&stack, room).await.ws(room).await;
    fine.next_of_type("ready").await;
    fine.send(&json!({"type": "send", "body": "hello", "ref": "r"}))
        .await;
    assert_eq!(fine.next_of_type("ack").await["ref"], "r");
}
