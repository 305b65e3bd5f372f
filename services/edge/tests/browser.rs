//! The browser client in Chromium: each test starts a stack (two edges
//! behind Traefik, the api, persist), signs two people up (accounts with a
//! password) and makes them members of a profile, and runs a Playwright
//! scenario (`tests/browser/scenarios.mjs`, run by Node) that uses the
//! client as people would, through Traefik: logging in with the login
//! form, name and password.
//!
//! A scenario can ask this test to act on the stack (kill an edge) with a
//! line `@rill <json>` on its stdout; the answer is a JSON line on its
//! stdin. A failed scenario saves a screenshot of each page under
//! `target/browser-screenshots/` and prints the paths.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rill_testkit::{Client, Stack, tools};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// Longest a scenario may run, Chromium's start included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Messages written before the history scenario opens the page: more than
/// one page (50) of history.
const HISTORY: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_one_over_websocket_one_over_sse() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    run_scenario(&mut stack, "chat", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_scrolls_back_and_a_reload_keeps_the_session() {
    let (mut stack, mut fixture) = fixture(|_| {}).await;
    write_history(&stack, &fixture).await;
    fixture["history"] = json!(HISTORY);
    run_scenario(&mut stack, "reload", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tab_on_the_same_profile_says_already_open() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    run_scenario(&mut stack, "secondTab", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_edge_s_page_reconnects_to_the_other_and_catches_up() {
    // The dead edge's session lock lingers until its TTL: keep it short.
    let (mut stack, fixture) =
        fixture(|s| s.redis.session_ttl_secs = std::time::Duration::from_secs(3)).await;
    run_scenario(&mut stack, "edgeKilled", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_lose_their_stream_show_every_message_once_in_the_one_order() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    run_scenario(&mut stack, "lostConnection", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_away_too_long_gets_a_gap_and_fills_it_from_history() {
    // Few replayed: the page's 60 missed messages are "too many".
    let (mut stack, fixture) = fixture(|s| {
        s.recovery.max_replay = 5;
        s.recovery.gap_page = 5;
    })
    .await;
    run_scenario(&mut stack, "gapReloads", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_new_signs_up_has_no_profiles_logs_out_and_logs_in_again() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    run_scenario(&mut stack, "signUp", &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_too_many_wait_and_the_right_one_logs_in() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    let screenshot = screenshots_dir().join("wrongPassword-login.png");
    // An earlier run's must not pass for this one's.
    let _ = std::fs::remove_file(&screenshot);
    run_scenario(&mut stack, "wrongPassword", &fixture).await;
    assert!(
        screenshot.is_file(),
        "no screenshot of the wrong password's error at {}",
        screenshot.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_page_s_stream_and_everywhere_ends_another_browser_s() {
    let (mut stack, fixture) = fixture(|_| {}).await;
    run_scenario(&mut stack, "logOutEnds", &fixture).await;
}

/// The fixture's people: name and password.
const PEOPLE: [(&str, &str); 2] = [
    ("Ada", "analytical engine 1843"),
    ("Grace", "compiler A-0 1952"),
];

/// A stack with two edges, and its fixture: two people with accounts, Ada
/// and Grace (name, password, id), both members of one profile, Lobby.
async fn fixture(tweak: impl Fn(&mut rill_edge::EdgeSettings)) -> (Stack, Value) {
    let stack = Stack::start_with(2, tweak).await;
    let profile = stack.create_profile("Lobby").await;
    let mut users = Vec::new();
    for (name, password) in PEOPLE {
        let id = stack.sign_up(name, password).await;
        stack.bind(id, profile).await;
        users.push(json!({ "id": id, "name": name, "password": password }));
    }
    let fixture = json!({
        "users": users,
        "profile": { "id": profile, "name": "Lobby" },
    });
    (stack, fixture)
}

/// Grace sends "history 1" to "history N" before the page opens; returns
/// once the api's history has them all.
async fn write_history(stack: &Stack, fixture: &Value) {
    let profile = &fixture["profile"]["id"];
    let grace = &fixture["users"][1];
    let client = stack.client();
    let login = client
        .post_json(
            "/api/login",
            &json!({ "name": grace["name"], "password": grace["password"] }),
        )
        .await;
    assert_eq!(
        login.status(),
        200,
        "grace logs in: {:?}",
        login.text().await
    );
    for n in 1..=HISTORY {
        let response = client
            .post_json(
                &format!("/live/{}/messages", profile.as_str().expect("id")),
                &json!({ "body": format!("history {n}") }),
            )
            .await;
        assert_eq!(response.status(), 200, "send history {n}");
    }
    wait_for_history(&client, profile.as_str().expect("id")).await;
}

async fn wait_for_history(client: &Client, profile: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page: Value = client
            .get(&format!("/api/profiles/{profile}/messages?limit=200"))
            .await
            .json()
            .await
            .expect("history json");
        let stored = page["items"].as_array().map_or(0, Vec::len);
        if stored == HISTORY {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "history holds {stored} of {HISTORY} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where failed scenarios leave their screenshots: `<target>/browser-screenshots`.
fn screenshots_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("browser-screenshots")
}

/// Runs `scenario` with Node against the stack's Traefik and answers its
/// requests; panics (with its output above) unless it passes.
async fn run_scenario(stack: &mut Stack, scenario: &str, fixture: &Value) {
    let dir = tools::browser_tests_dir();
    let screenshots = screenshots_dir();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(tools::node())
        .arg("run.mjs")
        .arg(scenario)
        .arg(stack.traefik.url())
        .arg(fixture.to_string())
        .current_dir(&dir)
        .env("RILL_CHROMIUM_BIN", tools::chromium())
        .env("RILL_SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            println!("node stderr: {line}");
        }
    });
    let ran = tokio::time::timeout(SCENARIO_TIMEOUT, async {
        while let Some(line) = stdout.next_line().await.expect("read node's output") {
            println!("{line}");
            if let Some(request) = line.strip_prefix("@rill ") {
                let answer = answer(stack, request);
                println!("answer: {answer}");
                stdin
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .expect("answer node");
            }
        }
        child.wait().await.expect("wait for node")
    })
    .await;
    let took = started.elapsed();
    let status = ran.unwrap_or_else(|_| {
        panic!(
            "browser scenario {scenario} did not finish within {SCENARIO_TIMEOUT:?}; \
             screenshots (if any) in {}",
            screenshots.display()
        )
    });
    println!("browser scenario {scenario}: {status} after {took:.1?}");
    assert!(
        status.success(),
        "browser scenario {scenario} failed ({status}); its output is above, \
         screenshots in {}",
        screenshots.display()
    );
}

/// Carries out a scenario's request; the JSON answer.
fn answer(stack: &mut Stack, request: &str) -> Value {
    let request: Value = match serde_json::from_str(request) {
        Ok(request) => request,
        Err(err) => return json!({ "ok": false, "error": format!("bad request: {err}") }),
    };
    match request["op"].as_str() {
        Some("kill_edge") => {
            let id = request["edge"].as_str().unwrap_or_default();
            match stack.edges.iter_mut().find(|e| e.id == id) {
                Some(edge) => {
                    edge.kill();
                    json!({ "ok": true })
                }
                None => json!({ "ok": false, "error": format!("no edge {id:?}") }),
            }
        }
        _ => json!({ "ok": false, "error": format!("unknown request {request}") }),
    }
}
