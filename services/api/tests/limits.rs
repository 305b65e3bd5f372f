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
