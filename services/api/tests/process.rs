//! The api as a process: operations endpoints, clean exit on SIGTERM, and
//! start-up refused on bad settings.

use std::path::Path;

use rill_testkit::redis::Redis;
use rill_testkit::service::{
    ServiceProcess, assert_refuses_to_start, assert_serves_ops_then_exits_on_sigterm,
};
use rill_testkit::stack::{TEST_COOKIE_KEY, TempDb};

const BINARY: &str = env!("CARGO_BIN_EXE_api");

#[tokio::test]
async fn serves_the_operations_endpoints_and_exits_cleanly_on_sigterm() {
    let db = TempDb::new();
    let redis = Redis::start();
    let path = db.path.display().to_string();
    let urls = format!("[{}]", redis.url());
    let env = [
        ("RILL_STORE__SQLITE_PATH", path.as_str()),
        ("RILL_REDIS__URLS", urls.as_str()),
        ("RILL_SESSION__COOKIE_KEY", TEST_COOKIE_KEY),
    ];
    let service = ServiceProcess::start(Path::new(BINARY), &env);
    assert_serves_ops_then_exits_on_sigterm(service).await;
}

#[test]
fn bad_settings_stop_start_up_naming_the_field() {
    assert_refuses_to_start(
        Path::new(BINARY),
        &[("RILL_KAFKA__PARTITIONS", "many")],
        "partitions",
    );
    assert_refuses_to_start(Path::new(BINARY), &[("RILL_LISTEN", "nowhere")], "listen");
    assert_refuses_to_start(
        Path::new(BINARY),
        &[("RILL_SESSION__COOKIE_KEY", "too-short")],
        "cookie_key",
    );
    assert_refuses_to_start(
        Path::new(BINARY),
        &[(
            "RILL_API_KEYS__KEYS",
            r#"[{name="ops",sha256="not-a-digest"}]"#,
        )],
        "api_keys",
    );
}
