//! A small run of the generator against a whole local stack (broker,
//! Redis, api, persist, two edges, Traefik), so that it never rots:
//! WebSocket and SSE sessions through Traefik, two worker processes, two
//! source addresses, then the report is checked, the latency series per
//! second of the sending included. The setup goes through the api with the
//! test stack's key (on the command line), the users log in with tokens
//! signed with its edges' secret (from the environment).

use std::process::Command;

use rill_testkit::stack::TEST_TOKEN_SECRET;
use rill_testkit::{Stack, TEST_API_KEY};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_mixed_run_connects_everyone_and_loses_nothing() {
    let stack = Stack::start(2).await;
    let dir = std::env::temp_dir().join(format!("rill-load-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (out, svg) = (dir.join("report.json"), dir.join("latency.svg"));
    let url = stack.traefik.url();
    let api = format!("http://{}", stack.api);
    let brokers = stack.broker.kafka_settings().brokers;
    let args = [
        "run",
        "--url",
        &url,
        "--api",
        &api,
        "--api-key",
        TEST_API_KEY,
        "--token-kid",
        "test",
        "--transport",
        "mix",
        "--profiles",
        "2",
        "--users",
        "10",
        "--rate",
        "20",
        "--duration",
        "3",
        "--drain",
        "2",
        "--settle",
        "0.5",
        "--workers",
        "2",
        "--source-ips",
        "2",
        "--broker",
        &brokers,
        "--interval-secs",
        "1",
        "--cpu-pid",
        &format!("rill-load-test={}", std::process::id()),
        "--timeout",
        "60",
        "--no-progress",
        "--label",
        "smoke",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--svg",
        svg.to_str().expect("utf-8 path"),
    ]
    .map(str::to_owned);
    let status = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rill-load"))
            .args(args)
            .env("RILL_LOAD_TOKEN_SECRET", TEST_TOKEN_SECRET)
            .status()
    })
    .await
    .expect("join")
    .expect("run rill-load");
    assert!(status.success(), "rill-load failed: {status}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("JSON");
    assert_eq!(report["connect"]["connected"], 20, "{report:#}");
    assert_eq!(report["connect"]["failed"], 0, "{report:#}");
    assert_eq!(
        report["errors"].as_object().map(|e| e.len()),
        Some(0),
        "{report:#}"
    );
    let sent = report["messages"]["sent"].as_u64().expect("sent");
    assert!(sent >= 50, "about 60 sends in 3 s: {report:#}");
    assert_eq!(report["messages"]["acked"], sent, "{report:#}");
    let deliveries = &report["deliveries"];
    assert_eq!(
        deliveries["expected"],
        sent * 10,
        "everyone on the profile gets it: {report:#}"
    );
    assert_eq!(deliveries["lost"], 0, "{report:#}");
    assert_eq!(deliveries["duplicated"], 0, "{report:#}");
    assert_eq!(deliveries["unique"], deliveries["expected"], "{report:#}");
    assert!(report["latency"]["count"].as_u64() > Some(0), "{report:#}");
    assert!(report["latency"]["p99_ms"].as_f64() > Some(0.0));
    assert!(
        report["broker_probe"]["received"].as_u64() > Some(0),
        "{report:#}"
    );
    assert!(report["commit"].as_str().is_some_and(|c| !c.is_empty()));
    let command = report["command"].as_str().expect("command");
    assert!(
        command.contains("--api-key [redacted]") && !command.contains(TEST_API_KEY),
        "the key stays out of the report: {command}"
    );

    // The series: three 1 s intervals over the 3 s of sending, each
    // message in the interval of its send time, all of them counted.
    let series = report["latency_by_interval"].as_array().expect("series");
    assert_eq!(series.len(), 3, "{report:#}");
    let starts: Vec<f64> = series
        .iter()
        .filter_map(|i| i["start_secs"].as_f64())
        .collect();
    assert_eq!(starts, [0.0, 1.0, 2.0], "{report:#}");
    assert_eq!(series[2]["end_secs"].as_f64(), Some(3.0));
    let with_deliveries: Vec<&Value> = series
        .iter()
        .filter(|i| i["deliveries"].as_u64() > Some(0))
        .collect();
    assert!(with_deliveries.len() >= 2, "{report:#}");
    for i in &with_deliveries {
        assert!(i["p50_ms"].as_f64() > Some(0.0), "{report:#}");
        assert!(i["p99_ms"].as_f64() >= i["p50_ms"].as_f64(), "{report:#}");
        assert!(i["max_ms"].as_f64() >= i["p999_ms"].as_f64(), "{report:#}");
    }
    let in_intervals: u64 = series.iter().filter_map(|i| i["deliveries"].as_u64()).sum();
    assert_eq!(
        Some(in_intervals),
        report["latency"]["count"].as_u64(),
        "every delivery is in an interval: {report:#}"
    );
    let probe_series = report["broker_probe"]["end_to_end_by_interval"]
        .as_array()
        .expect("probe series");
    assert_eq!(probe_series.len(), 3, "{report:#}");
    assert!(
        probe_series
            .iter()
            .filter(|i| i["deliveries"].as_u64() > Some(0))
            .count()
            >= 2,
        "{report:#}"
    );
    assert_eq!(report["config"]["interval_secs"], 1.0);
    // This test process, asked for by name: alive through the sending.
    assert!(
        report["cpu_secs_sending_by_process"]["rill-load-test"]
            .as_f64()
            .is_some(),
        "{report:#}"
    );

    let plot = std::fs::read_to_string(&svg).expect("svg");
    assert!(plot.starts_with("<svg") && plot.contains("<polyline"));
    assert!(
        plot.contains("per 1 s interval"),
        "the panel over time: {plot}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
