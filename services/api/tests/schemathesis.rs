//! schemathesis against the live api: requests made from the
//! `/api/openapi.json` the api serves (valid ones, invalid ones, methods a
//! path does not have, calls chained through the ids they answer), every
//! check on every answer: no 5xx, each status and body as documented,
//! what the document allows is accepted and what it refuses is refused,
//! a 405 carries `Allow`, a protected route refuses a caller without a
//! key. It runs as a server (the test stack's API key), with the test-data
//! routes on, a bounded number of examples per operation and a fixed seed,
//! so that a run is repeatable and takes about a minute.
//!
//! schemathesis is installed by `scripts/lib/tools.sh` (`ensure_tools`,
//! which `scripts/test.sh` runs), which exports `RILL_SCHEMATHESIS_BIN`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_testkit::{Stack, TEST_API_KEY};

/// The version `scripts/lib/tools.sh` pins (`RILL_SCHEMATHESIS_VERSION`).
const VERSION: &str = "4.32.5";

/// Test cases per operation and phase: enough to reach every rule of the
/// document, few enough for about a minute on two busy cores.
const EXAMPLES_PER_OPERATION: u32 = 15;

/// The same cases on every run; set `RILL_SCHEMATHESIS_SEED` to explore.
const SEED: u64 = 19;

/// Past this the run is stopped and the test fails: a hung request must
/// not hang the suite.
const DEADLINE: Duration = Duration::from_secs(600);

/// Where the tools step put schemathesis; a clear failure, not a skip,
/// when it is not there.
fn schemathesis() -> PathBuf {
    let path = match std::env::var_os("RILL_SCHEMATHESIS_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let tools = std::env::var_os("RILL_TOOLS")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                    PathBuf::from(home).join(".local/share/rill")
                });
            tools.join(format!("schemathesis-{VERSION}/bin/schemathesis"))
        }
    };
    assert!(
        path.exists(),
        "schemathesis is not installed at {}: run the tests with scripts/test.sh, or install \
         it with `source scripts/lib/tools.sh && ensure_schemathesis` (which exports \
         RILL_SCHEMATHESIS_BIN)",
        path.display()
    );
    path
}

/// Runs `command` to its end or to [`DEADLINE`]: whether it exited 0, and
/// everything it printed.
fn run(mut command: Command) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), printed),
        None => (
            false,
            format!("{printed}\nstopped: still running after {DEADLINE:?}"),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_what_its_openapi_document_says() {
    let bin = schemathesis();
    let stack = Stack::start(1).await;
    let seed = std::env::var("RILL_SCHEMATHESIS_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
        .unwrap_or(SEED);
    // A folder of its own: nothing is left in the checkout.
    let scratch = std::env::temp_dir().join(format!("rill-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch folder");
    let mut command = Command::new(&bin);
    command
        .current_dir(&scratch)
        .arg("run")
        .arg(format!("http://{}/api/openapi.json", stack.api))
        .args(["--checks", "all"])
        // An event stream never ends: a request would only time out. The
        // ops tests check it (tests/ops.rs).
        .args(["--exclude-path", "/api/ops/stream"])
        .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--header", &format!("X-Api-Key: {TEST_API_KEY}")])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .arg("--no-color");
    let started = Instant::now();
    let (passed, printed) = tokio::task::spawn_blocking(move || run(command))
        .await
        .expect("the schemathesis run");
    let _ = std::fs::remove_dir_all(&scratch);
    println!("schemathesis (seed {seed}) took {:?}", started.elapsed());
    assert!(
        passed,
        "schemathesis found the api and openapi.json at odds (seed {seed}):\n{printed}"
    );
}
