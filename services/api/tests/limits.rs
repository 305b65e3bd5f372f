//! Bounded under abuse (issue 16): a server's API key calls at most
//! `limits.calls_per_api_key`; another key is served meanwhile.

use std::path::Path;

use rill_testkit::redis::Redis;
use rill_testkit::service::ServiceProcess;
use rill_testkit::stack::{TEST_COOKIE_KEY, TempDb};

const BINARY: &str = env!("CARGO_BIN_EXE_api");

const GREEDY_KEY: &str = "rk_greedy-key-of-the-limit-test";
const OTHER_KEY: &str = "rk_other-key-of-the-limit-test";

/// The api as a process on a store and Redis of its own, with two API
/// keys and `env` added.
fn api(db: &TempDb, redis: &Redis, env: &[(&str, &str)]) -> ServiceProcess {
    let path = db.path.display().to_string();
    let urls = format!("[{}]", redis.url());
    let keys = format!(
        r#"[{{name="greedy",sha256="{}"}},{{name="other",sha256="{}"}}]"#,
        rill_auth::api_key::digest(GREEDY_KEY),
        rill_auth::api_key::digest(OTHER_KEY),
    );
    let mut all = vec![
        ("RILL_STORE__SQLITE_PATH", path.as_str()),
        ("RILL_REDIS__URLS", urls.as_str()),
        ("RILL_SESSION__COOKIE_KEY", TEST_COOKIE_KEY),
        ("RILL_API_KEYS__KEYS", keys.as_str()),
    ];
    all.extend_from_slice(env);
    ServiceProcess::start(Path::new(BINARY), &all)
}

#[tokio::test]
async fn a_key_past_its_call_rate_gets_429_and_another_key_is_served() {
    let (db, redis) = (TempDb::new(), Redis::start());
    let api = api(
        &db,
        &redis,
        &[(
            "RILL_LIMITS__CALLS_PER_API_KEY",
            "{per_second=0.001,burst=3}",
        )],
    );
    let http = reqwest::Client::new();
    let list_users = |key: &'static str| {
        http.get(format!("{}/api/users", api.url()))
            .header("x-api-key", key)
            .send()
    };
    for n in 0..3 {
        let response = list_users(GREEDY_KEY).await.expect("request");
        assert_eq!(response.status(), 200, "call {n}");
    }
    let refused = list_users(GREEDY_KEY).await.expect("request");
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1);
    let body: serde_json::Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"], "rate_limited");

    let other = list_users(OTHER_KEY).await.expect("request");
    assert_eq!(other.status(), 200, "another key has its own bucket");
    // A wrong key is refused as before (401), not counted against anyone.
    let wrong = list_users("rk_wrong").await.expect("request");
    assert_eq!(wrong.status(), 401);
}

/// Read deadlines: a client sending its request headers byte by byte is cut
/// off after `limits.header_read_timeout_secs`, one whose body stops short
/// after `limits.body_read_timeout_secs`, an idle keep-alive connection
/// after `limits.idle_timeout_secs`; a client in time is served.
#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    const PATIENCE: Duration = Duration::from_secs(30);
    let (db, redis) = (TempDb::new(), Redis::start());
    let api = api(
        &db,
        &redis,
        &[
            ("RILL_LIMITS__HEADER_READ_TIMEOUT_SECS", "1"),
            ("RILL_LIMITS__BODY_READ_TIMEOUT_SECS", "2"),
            ("RILL_LIMITS__IDLE_TIMEOUT_SECS", "3"),
        ],
    );
    let addr = api.addr;
    /// Whether the server closed `tcp` within `wait` (what it sends is read
    /// and dropped).
    async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
        let mut sink = [0u8; 4096];
        let read_all = async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} };
        tokio::time::timeout(wait, read_all).await.is_ok()
    }

    // Slowloris: a byte every 300 ms, headers that never end.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Padding: ");
    for byte in head.bytes().chain(std::iter::repeat(b'a')) {
        if slow.write_all(&[byte]).await.is_err()
            || closed_within(&mut slow, Duration::from_millis(300)).await
        {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "still connected");
    }
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A slow body: a sign-up (read by anyone) that stops short.
    let mut slow_body = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/signup HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\": \"a"
    );
    slow_body.write_all(head.as_bytes()).await.expect("request");
    let started = Instant::now();
    assert!(
        closed_within(&mut slow_body, PATIENCE).await,
        "an unfinished body still awaited"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "closed before the body deadline: {:?}",
        started.elapsed()
    );

    // In time, then idle: served, kept open past the header deadline, then
    // closed.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    idle.write_all(request.as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(PATIENCE, idle.read(&mut chunk))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let quiet_from = Instant::now();
    assert!(
        !closed_within(&mut idle, Duration::from_millis(1500)).await,
        "closed by the header deadline while idle"
    );
    assert!(closed_within(&mut idle, PATIENCE).await, "never closed");
    assert!(quiet_from.elapsed() >= Duration::from_secs(2));
}
