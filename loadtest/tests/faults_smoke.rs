//! `rill-load faults` against a test stack (two edges behind Traefik),
//! with one fault: the second edge is killed while clients send. Its
//! clients come back on the other edge with their last position; the
//! report must then show every acknowledged message received by every
//! client that stayed, once and in order, nobody listed as live after it
//! left, everything stored, and the mark on the plot.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rill_testkit::stack::TEST_TOKEN_SECRET;
use rill_testkit::{Client, Stack, TEST_API_KEY};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_live_through_a_killed_edge_and_the_report_says_so() {
    let mut stack = Stack::start(2).await;
    let dir = std::env::temp_dir().join(format!("rill-load-faults-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (out, svg, marks) = (
        dir.join("report.json"),
        dir.join("timeline.svg"),
        dir.join("marks.tsv"),
    );
    let url = stack.traefik.url();
    let api = format!("http://{}", stack.api);
    let args = [
        "faults",
        "--url",
        &url,
        "--api",
        &api,
        "--token-kid",
        "test",
        "--profiles",
        "2",
        "--users",
        "4",
        "--rate",
        "10",
        "--duration",
        "16",
        "--settle",
        "12",
        "--label",
        "faults-smoke",
        "--marks",
        marks.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--svg",
        svg.to_str().expect("utf-8 path"),
    ];
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_rill-load"))
        .args(args)
        .env("RILL_LOAD_API_KEY", TEST_API_KEY)
        .env("RILL_LOAD_TOKEN_SECRET", TEST_TOKEN_SECRET)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run rill-load");

    // Once the second edge holds sessions, it is killed.
    let second = Client::new(&stack.edges[1].url());
    let since = Instant::now();
    while second.metric("rill_edge_live_sessions").await < 1.0 {
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "no client reached the second edge"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // sends under way
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    stack.edges[1].kill();
    std::fs::write(&marks, format!("{killed_at}\tkill edge-2\n")).expect("marks");

    let status = tokio::time::timeout(Duration::from_secs(300), run.wait())
        .await
        .expect("rill-load ends by itself")
        .expect("rill-load status");
    assert!(status.success(), "rill-load failed: {status}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("JSON");
    let totals = &report["totals"];
    assert!(totals["acked"].as_u64() > Some(100), "{totals:#}");
    // The window holds everything a client missed: no gap either.
    for zero in [
        "lost_silently",
        "lost_after_gap",
        "duplicated",
        "out_of_order",
        "ghosts",
        "acked_never_delivered",
    ] {
        assert_eq!(totals[zero], 0, "{zero}: {totals:#}");
    }
    let resumed: u64 = report["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|c| c["resumed_sessions"].as_u64())
        .sum();
    assert!(
        resumed >= 1,
        "the killed edge's clients came back: {report:#}"
    );
    assert_eq!(report["stored"]["acked_not_stored"], 0, "{report:#}");
    assert_eq!(report["stored"]["stored_twice"], 0, "{report:#}");
    assert_eq!(report["marks"][0]["label"], "kill edge-2");
    let plot = std::fs::read_to_string(&svg).expect("svg");
    assert!(plot.contains("kill edge-2"), "the mark is drawn");
    let _ = std::fs::remove_dir_all(&dir);
}
