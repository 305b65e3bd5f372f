//! `rill-load hostile` against a test stack of two edges, briefly, every
//! kind at once, with the edges' limits tightened and their deadlines
//! shortened so that each is met within seconds: the flood gets
//! `rate_limited` and its sessions go on, the connect/close loops get 429,
//! the slow readers get a `gap` and are cut, the parked fragments and the
//! slowloris connections are closed. The report must say so, and the
//! edges' own counters must agree.

use std::process::Stdio;
use std::time::Duration;

use rill_runtime::rate_limit::Rate;
use rill_testkit::stack::TEST_TOKEN_SECRET;
use rill_testkit::{Stack, TEST_API_KEY};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_kind_meets_its_limit() {
    let stack = Stack::start_with(2, |edge| {
        let limits = &mut edge.limits;
        limits.sends_per_session = Rate {
            per_second: 5.0,
            burst: 10,
        };
        limits.opens_per_user = Rate {
            per_second: 2.0,
            burst: 3,
        };
        limits.opens_per_address = Rate {
            per_second: 20.0,
            burst: 20,
        };
        limits.session_queue_depth = 64;
        limits.session_queue_bytes = 64 * 1024;
        limits.slow_client_secs = Duration::from_secs(2);
        limits.fragment_timeout_secs = Duration::from_secs(3);
        limits.header_read_timeout_secs = Duration::from_secs(3);
    })
    .await;
    let dir = std::env::temp_dir().join(format!("rill-load-hostile-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("report.json");
    let api = format!("http://{}", stack.api);
    let (edge1, edge2) = (stack.edges[0].url(), stack.edges[1].url());
    let args = [
        "hostile",
        "--url",
        &edge1,
        "--url",
        &edge2,
        "--api",
        &api,
        "--token-kid",
        "test",
        "--duration",
        "15",
        "--floods",
        "2",
        "--flood-rate",
        "200",
        "--churn",
        "2",
        "--churn-rate",
        "20",
        "--readers",
        "2",
        "--reader-hold",
        "12",
        "--parked",
        "2",
        "--parked-wait",
        "10",
        "--slowloris",
        "4",
        "--slowloris-wait",
        "10",
        "--label",
        "hostile-smoke",
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_rill-load"))
        .args(args)
        .env("RILL_LOAD_API_KEY", TEST_API_KEY)
        .env("RILL_LOAD_TOKEN_SECRET", TEST_TOKEN_SECRET)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run rill-load");
    let status = tokio::time::timeout(Duration::from_secs(180), run.wait())
        .await
        .expect("rill-load ends by itself")
        .expect("rill-load status");
    assert!(status.success(), "rill-load failed: {status}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("JSON");
    let kinds = &report["kinds"];
    let count = |kind: &str, what: &str| kinds[kind]["counts"][what].as_u64().unwrap_or(0);
    let count_prefix = |kind: &str, prefix: &str| -> u64 {
        kinds[kind]["counts"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };

    // The flood: refused past its bucket, acknowledged within it, never cut.
    assert!(count("flood", "error_rate_limited") > 0, "{kinds:#}");
    assert!(count("flood", "ack") > 0, "{kinds:#}");
    assert_eq!(count_prefix("flood", "ended_by_edge"), 0, "{kinds:#}");
    // The loops: refused with 429 before any upgrade.
    assert!(count("churn", "http_429_rate_limited") > 0, "{kinds:#}");
    assert!(count("churn", "opened") > 0, "{kinds:#}");
    // The slow readers: a gap for the made-up position, then cut.
    assert!(count_prefix("slow_reader", "gap_") > 0, "{kinds:#}");
    assert!(count("slow_reader", "cut") > 0, "{kinds:#}");
    assert_eq!(count("slow_reader", "not_cut"), 0, "{kinds:#}");
    // The parked fragments: closed with 1008.
    assert!(
        count_prefix("parked_fragment", "closed_1008") > 0,
        "{kinds:#}"
    );
    assert_eq!(count("parked_fragment", "not_closed"), 0, "{kinds:#}");
    // Slowloris: closed about the header deadline after the first byte.
    assert!(count_prefix("slowloris", "closed") >= 4, "{kinds:#}");
    assert_eq!(count("slowloris", "not_closed"), 0, "{kinds:#}");
    let cut = kinds["slowloris"]["cut"]["min_secs"].as_f64().expect("cut");
    assert!((2.5..8.0).contains(&cut), "{kinds:#}");
    assert_eq!(report["all_held"], true, "{:#}", report["verdicts"]);

    // The edges saw it the same way.
    let edges = &report["edge_counters_delta"];
    let edge_count = |prefix: &str| -> f64 {
        edges
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, v)| v.as_f64())
            .sum()
    };
    assert!(
        edge_count("rill_edge_sends_refused_total{reason=\"rate_limited\"") > 0.0,
        "{edges:#}"
    );
    assert!(
        edge_count("rill_edge_sessions_refused_total{reason=\"opens_per_user\"") > 0.0,
        "{edges:#}"
    );
    assert!(
        edge_count("rill_edge_connections_expired_total{reason=\"header_read_timeout\"") >= 4.0,
        "{edges:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
