//! The operations page and its stream (`src/ops/`): the stream refuses
//! anyone without a server API key and streams what the edges, persist,
//! Redis and the store say; the page shows it live in Chromium.
//!
//! Each test starts a stack (two edges, persist, its api) and a second api
//! on the same Redis, store and broker whose `ops` settings name the
//! stack's edges and persist (the stack's own api is started before the
//! edges have addresses).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rill_runtime::Secret;
use rill_runtime::shutdown::CancellationToken;
use rill_testkit::stack::{TEST_COOKIE_KEY, redis_settings};
use rill_testkit::{Stack, TEST_API_KEY, WsClient, tools};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpListener;

/// Longest a wait for a snapshot may take.
const SOON: Duration = Duration::from_secs(20);

/// An api whose operations page watches `stack`; its address. It stops
/// when `stop` is cancelled.
async fn ops_api(stack: &Stack, stop: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut settings = rill_api::ApiSettings {
        kafka: stack.broker.kafka_settings(),
        store: stack.store.settings(),
        redis: redis_settings(&stack.redis),
        ..Default::default()
    };
    settings.session.cookie_key = Some(Secret::new(TEST_COOKIE_KEY));
    settings.api_keys.keys = vec![rill_auth::api_key::ApiKeyEntry {
        name: "operator".into(),
        sha256: rill_auth::api_key::digest(TEST_API_KEY),
    }];
    settings.ops.edges = stack.edges.iter().map(|e| e.url()).collect();
    settings.ops.persist = Some(format!("http://{}", stack.persist));
    settings.ops.interval_ms = Duration::from_millis(500);
    settings.ops.scrape_timeout_ms = Duration::from_millis(500);
    let token = stop.clone();
    tokio::spawn(async move {
        rill_api::run(settings, listener, token)
            .await
            .expect("the ops api runs");
    });
    addr
}

/// A live WebSocket session on each of the stack's edges.
async fn a_session_on_each_edge(stack: &Stack) -> Vec<WsClient> {
    let profile = stack.create_profile("Ops").await;
    let mut sessions = Vec::new();
    for n in 0..stack.edges.len() {
        let user = stack.member_of(&[profile]).await;
        let client = stack.edge_client(n);
        client.login(user).await;
        sessions.push(client.ws(profile).await);
    }
    sessions
}

/// Reads `response` as an event stream until a `snapshot` for which
/// `wanted` holds; panics after [`SOON`], with the last one seen.
async fn snapshot_where(response: reqwest::Response, wanted: impl Fn(&Value) -> bool) -> Value {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut last = Value::Null;
    let deadline = Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, body.next())
            .await
            .unwrap_or_else(|_| panic!("no snapshot as wanted within {SOON:?}; last: {last}"))
            .expect("the stream goes on")
            .expect("a chunk of the stream");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let named = |l: &str| l.strip_prefix("event:").map(str::trim) == Some("snapshot");
            if !event.lines().any(named) {
                continue;
            }
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            last = serde_json::from_str(&data).expect("a snapshot is JSON");
            if wanted(&last) {
                return last;
            }
        }
    }
}

fn every_edge_has_a_session(snapshot: &Value) -> bool {
    let edges = snapshot["edges"].as_array().cloned().unwrap_or_default();
    edges.len() == 2
        && edges
            .iter()
            .all(|e| e["up"] == true && e["sessions"].as_f64().is_some_and(|n| n >= 1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_wants_a_server_key_and_shows_every_edge_live() {
    let stack = Stack::start(2).await;
    let stop = CancellationToken::new();
    let api = ops_api(&stack, &stop).await;
    let url = format!("http://{api}/api/ops/stream");
    let http = reqwest::Client::new();

    let none = http.get(&url).send().await.expect("GET");
    assert_eq!(none.status(), 401, "without a key");
    let wrong = http
        .get(&url)
        .header("x-api-key", "rk_not-a-key-of-this-api")
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 401, "with a wrong key");

    // A signed-in user is not an operator.
    let person = stack.create_user("Person").await;
    let browser = stack.edge_client(0);
    browser.login(person).await;
    let cookie = http
        .get(&url)
        .header("cookie", browser.cookie_header())
        .send()
        .await
        .expect("GET");
    assert_eq!(cookie.status(), 403, "with a user's cookie");

    let _sessions = a_session_on_each_edge(&stack).await;
    let stream = http
        .get(&url)
        .header("x-api-key", TEST_API_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let snapshot = snapshot_where(stream, |s| {
        every_edge_has_a_session(s)
            && s["edges"][0]["sends_per_sec"].is_number()
            && s["persist"]["lag"]
                .as_object()
                .is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(snapshot["redis"]["ok"], true, "{snapshot}");
    assert_eq!(snapshot["store"]["ok"], true, "{snapshot}");
    assert_eq!(snapshot["persist"]["up"], true, "{snapshot}");
    for edge in snapshot["edges"].as_array().expect("edges") {
        assert_eq!(edge["ready"], true, "{edge}");
        assert!(
            ["available", "warning", "critical"]
                .contains(&edge["availability"].as_str().unwrap_or("")),
            "{edge}"
        );
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_both_edges_live_in_chromium() {
    let stack = Stack::start(2).await;
    let stop = CancellationToken::new();
    let api = ops_api(&stack, &stop).await;
    let _sessions = a_session_on_each_edge(&stack).await;

    let screenshot = screenshots_dir().join("ops-live.png");
    // An earlier run's must not pass for this one's.
    let _ = std::fs::remove_file(&screenshot);
    let fixture = json!({
        "key": TEST_API_KEY,
        "edges": stack.edges.iter().map(|e| e.url()).collect::<Vec<_>>(),
    });
    run_scenario("opsLive", &format!("http://{api}"), &fixture).await;
    assert!(
        screenshot.is_file(),
        "no screenshot of the page at {}",
        screenshot.display()
    );
    stop.cancel();
}

/// Where the browser scenarios leave their screenshots: `<target>/browser-screenshots`.
fn screenshots_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("browser-screenshots")
}

/// Runs the Playwright `scenario` (`services/edge/tests/browser/ops.mjs`)
/// against `base`; panics, with its output above, unless it passes.
async fn run_scenario(scenario: &str, base: &str, fixture: &Value) {
    let mut child = tokio::process::Command::new(tools::node())
        .arg("run.mjs")
        .arg(scenario)
        .arg(base)
        .arg(fixture.to_string())
        .current_dir(tools::browser_tests_dir())
        .env("RILL_CHROMIUM_BIN", tools::chromium())
        .env("RILL_SCREENSHOTS", screenshots_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            println!("node stderr: {line}");
        }
    });
    let status = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await.expect("node's output") {
            println!("{line}");
        }
        child.wait().await.expect("wait for node")
    })
    .await
    .unwrap_or_else(|_| panic!("browser scenario {scenario} did not finish"));
    assert!(
        status.success(),
        "browser scenario {scenario} failed ({status}); its output is above"
    );
}
