//! Bounded under abuse (issue 16): one client cannot open streams as fast
//! as it likes, nor hold more than its share of an edge's sessions, nor
//! grow a session's queue past its bytes; the legitimate caller beside it
//! is still served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rill_runtime::rate_limit::Rate;
use rill_testkit::{Client, Stack};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::Uuid;

/// A rate that refills too slowly for a test to see: only the burst counts.
fn burst_of(burst: u32) -> Rate {
    Rate {
        per_second: 0.001,
        burst,
    }
}

/// The answer to a GET sent on a connection of its own: status, headers
/// (names in lower case), the JSON body of a refusal, and the connection,
/// which an SSE stream keeps open.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    _connection: TcpStream,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A GET of `path` on `addr` as `client` (its cookie), with `headers`.
async fn get(addr: SocketAddr, client: &Client, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {}\r\n",
        client.cookie_header()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut byte))
            .await
            .expect("a response head within 30 s")
            .expect("read");
        assert_eq!(read, 1, "closed before the head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("a text head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(length) if status != 200 => {
            let mut body = vec![0u8; length];
            tcp.read_exact(&mut body).await.expect("body");
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    Answer {
        status,
        headers,
        body,
        _connection: tcp,
    }
}

/// A client logged in (on edge 0) as a new member of `profiles`.
async fn member(stack: &Stack, profiles: &[Uuid]) -> Client {
    let client = stack.edge_client(0);
    client.login(stack.member_of(profiles).await).await;
    client
}

fn assert_refused_with(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], code, "{}", answer.body);
    let retry_after: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_opening_too_many_streams_gets_429_and_another_user_is_served() {
    let stack = Stack::start_with(1, |s| s.limits.opens_per_user = burst_of(3)).await;
    let edge = stack.edges[0].addr;
    let mut rooms = Vec::new();
    for _ in 0..5 {
        rooms.push(stack.create_profile("Room").await);
    }
    let ada = member(&stack, &rooms).await;
    // Three streams, SSE and WebSocket alike, on three profiles: the burst.
    let first = get(edge, &ada, &format!("/live/{}/sse", rooms[0]), &[]).await;
    assert_eq!(first.status, 200);
    let _ws = ada.ws(rooms[1]).await;
    let third = get(edge, &ada, &format!("/live/{}/sse", rooms[2]), &[]).await;
    assert_eq!(third.status, 200);
    // The fourth, SSE or WebSocket: refused before anything opens.
    let fourth = get(edge, &ada, &format!("/live/{}/sse", rooms[3]), &[]).await;
    assert_refused_with(&fourth, 429, "rate_limited");
    let ws = ada.try_ws(&format!("/live/{}/ws", rooms[4]), &[]).await;
    assert_eq!(ws.err().map(|(status, _)| status), Some(429));

    // Another user, from the same address, is served.
    let bob = member(&stack, &rooms).await;
    let bobs = get(edge, &bob, &format!("/live/{}/sse", rooms[3]), &[]).await;
    assert_eq!(bobs.status, 200, "{}", bobs.body);
    let metrics = stack.edge_client(0);
    assert_eq!(metrics.metric("rill_edge_sessions_refused").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_opening_too_many_streams_gets_429_whoever_it_claims_to_be() {
    let stack = Stack::start_with(1, |s| s.limits.opens_per_address = burst_of(4)).await;
    let room = stack.create_profile("Room").await;
    let edge = stack.edges[0].addr;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    // Anonymous attempts count too: the address is limited before the
    // caller is known.
    let anonymous = stack.edge_client(0);
    for _ in 0..2 {
        let answer = get(
            edge,
            &anonymous,
            &format!("/live/{room}/sse"),
            &from("192.0.2.1"),
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    let ada = member(&stack, &[room]).await;
    let opened = get(edge, &ada, &format!("/live/{room}/sse"), &from("192.0.2.1")).await;
    assert_eq!(opened.status, 200);
    let bob = member(&stack, &[room]).await;
    let ws = bob
        .try_ws(&format!("/live/{room}/ws"), &from("192.0.2.1"))
        .await;
    assert!(ws.is_ok(), "the fourth open from the address");
    let grace = member(&stack, &[room]).await;
    let refused = get(
        edge,
        &grace,
        &format!("/live/{room}/sse"),
        &from("192.0.2.1"),
    )
    .await;
    assert_refused_with(&refused, 429, "rate_limited");

    // The same user from another address is served.
    let served = get(
        edge,
        &grace,
        &format!("/live/{room}/sse"),
        &from("192.0.2.2"),
    )
    .await;
    assert_eq!(served.status, 200, "{}", served.body);

    // Through Traefik, the address is the one Traefik saw (the last hop it
    // appends), whatever the client wrote: forging the header gains
    // nothing. Four opens from 127.0.0.1, each claiming another address.
    let through_proxy = stack.client();
    through_proxy.login(stack.member_of(&[room]).await).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        let forged = format!("198.51.100.{n}");
        let answer = through_proxy
            .try_sse(
                &format!("/live/{room}/sse"),
                &[("x-forwarded-for", &forged)],
            )
            .await;
        statuses.push(answer.err().map_or(200, |(status, _)| status));
    }
    // 409 (already live) counts as an open as well: the fifth is refused.
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_sessions_gets_429_until_one_of_them_ends() {
    let stack = Stack::start_with(1, |s| s.limits.max_sessions_per_address = 2).await;
    let room = stack.create_profile("Room").await;
    let edge = stack.edges[0].addr;
    let from = [("x-forwarded-for", "192.0.2.7")];
    let ada = member(&stack, &[room]).await;
    let adas = get(edge, &ada, &format!("/live/{room}/sse"), &from).await;
    assert_eq!(adas.status, 200);
    let bob = member(&stack, &[room]).await;
    let mut bobs = bob
        .try_ws(&format!("/live/{room}/ws"), &from)
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
    bobs.next_of_type("ready").await;

    let grace = member(&stack, &[room]).await;
    let refused = get(edge, &grace, &format!("/live/{room}/sse"), &from).await;
    assert_refused_with(&refused, 429, "too_many_sessions");
    let ws = grace.try_ws(&format!("/live/{room}/ws"), &from).await;
    assert_eq!(ws.err().map(|(status, _)| status), Some(429));
    // Another address is served.
    let elsewhere = get(
        edge,
        &grace,
        &format!("/live/{room}/sse"),
        &[("x-forwarded-for", "192.0.2.8")],
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
    drop(elsewhere);

    // One of the address's sessions ends: its place is free again.
    drop(bobs);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(edge, &grace, &format!("/live/{room}/sse"), &from).await;
        if answer.status == 200 {
            break;
        }
        assert!(
            matches!(answer.status, 429 | 409),
            "unexpected: {} {}",
            answer.status,
            answer.body
        );
        assert!(Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Queued bytes, not only queued events, are bounded per session: with a
/// depth that never binds, a client that stops reading while a flood goes
/// by gets a `gap` (slow_client) once it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_queue_bytes_gets_a_gap() {
    const QUEUE_BYTES: usize = 32 * 1024;
    let stack = Stack::start_with(1, |s| {
        s.limits.session_queue_depth = 1_000_000;
        s.limits.session_queue_bytes = QUEUE_BYTES;
        s.limits.slow_client_secs = Duration::from_secs(120);
    })
    .await;
    let room = stack.create_profile("Room").await;
    let reader = member(&stack, &[room]).await;
    // Small socket buffers: the kernel would otherwise absorb the flood.
    let mut stalled = reader.ws_with_receive_buffer(room, 8 * 1024).await;
    let sender = member(&stack, &[room]).await;
    let body = "x".repeat(4000);
    let flood = futures_util::future::join_all((0..4).map(|_| {
        let (sender, body) = (sender.clone(), body.clone());
        async move {
            for _ in 0..400 {
                let reply = sender
                    .post_json(&format!("/live/{room}/messages"), &json!({ "body": body }))
                    .await;
                assert_eq!(reply.status(), 200);
            }
        }
    }));
    flood.await;
    let edge = stack.edge_client(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge.metric("rill_edge_records_consumed").await < 1600.0 {
        assert!(Instant::now() < deadline, "the flood was not consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = edge.metric("rill_edge_dropped_events").await;
    assert!(dropped > 0.0, "the bytes bound dropped events");
    let queued = edge.metric("rill_edge_queued_bytes").await;
    assert!(
        queued <= (QUEUE_BYTES + 5000) as f64,
        "queued {queued} bytes for one session"
    );
    let gap = stalled.next_of_type("gap").await;
    assert_eq!(gap["reason"], "slow_client");
}

/// HTTP connections are at most `max_connections + max_pending_connections`:
/// past it a new connection is closed at once; one closed makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let stack = Stack::start_with(1, |s| {
        s.limits.max_connections = 2;
        s.limits.max_pending_connections = 1;
    })
    .await;
    let edge = stack.edges[0].addr;
    // Three idle connections: the cap.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(edge).await.expect("connect"));
    }
    let metrics = stack.edge_client(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Each try is a connection of its own: refused until one of the
        // held ones is accepted and counted (the count is the edge's).
        let mut extra = TcpStream::connect(edge).await.expect("connect");
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {edge}\r\nConnection: close\r\n\r\n");
        let _ = extra.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut answer)).await;
        if matches!(read, Ok(Ok(_)) | Ok(Err(_))) && answer.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a fourth connection was served: {answer:?}"
        );
    }
    drop(held);
    // Room again: served (the metrics request is itself a connection).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut tcp = TcpStream::connect(edge).await.expect("connect");
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {edge}\r\nConnection: close\r\n\r\n");
        let _ = tcp.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.metric("rill_edge_connections_refused").await >= 1.0);
}
