//! A service binary (`edge`, `api`, `persist`) run as a real process, for
//! what only a process shows: settings from the environment, signals, exit
//! codes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, free_addr};

/// A running service process and the address it listens on.
#[derive(Debug)]
pub struct ServiceProcess {
    pub addr: SocketAddr,
    pub process: ChildGuard,
}

impl ServiceProcess {
    /// Starts `binary` on a free port with `env` added, and waits until it
    /// listens.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let mut process = spawn(binary, addr, env);
        process.wait_for_port(addr, Duration::from_secs(30));
        Self { addr, process }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `binary` listening on `addr` with `env` added, without waiting.
/// The test's own `RILL_CONFIG` and `OTEL_EXPORTER_OTLP_ENDPOINT` are not
/// passed on (the process exports no spans), unless `env` sets them: a
/// test that checks spans adds `otlp::OtlpReceiver::env`.
pub fn spawn(binary: &Path, addr: SocketAddr, env: &[(&str, &str)]) -> ChildGuard {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut command = Command::new(binary);
    command
        .env("RILL_LISTEN", addr.to_string())
        .env("RILL_TELEMETRY__LOG_FORMAT", "text")
        .env_remove("RILL_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for (key, value) in env {
        command.env(key, value);
    }
    ChildGuard::spawn(&name, &mut command)
}

/// How long a just-started service may take to say it is ready (its first
/// answers from Kafka, say) on a busy machine.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Checks `/healthz`, `/readyz` (once the service says it is ready: a
/// readiness that never comes fails), `/metrics` and a JSON 404, then
/// sends SIGTERM and checks the process exits with success.
pub async fn assert_serves_ops_then_exits_on_sigterm(mut service: ServiceProcess) {
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", service.url())).send();
    let health = get("/healthz").await.expect("request");
    assert_eq!(health.status(), 200, "/healthz");
    assert_eq!(health.text().await.expect("body"), "ok");
    let since = std::time::Instant::now();
    let ready = loop {
        let response = get("/readyz").await.expect("request");
        if response.status() == 200 || since.elapsed() >= READY_WAIT {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.status(), 200, "/readyz after {READY_WAIT:?}");
    assert_eq!(ready.text().await.expect("body"), "ready");
    let metrics = http
        .get(format!("{}/metrics", service.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.text().await.expect("body").ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let missing = http
        .get(format!("{}/nope", service.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("JSON 404");
    assert_eq!(body["error"], "not_found");

    let status = service.process.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        service.process.log()
    );
}

/// Starts `binary` with `env` and checks that it refuses to start, with a
/// message that names `field`.
pub fn assert_refuses_to_start(binary: &Path, env: &[(&str, &str)], field: &str) {
    let mut process = spawn(binary, free_addr(), env);
    let status = process.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "started despite bad settings");
    let log = process.log();
    assert!(
        log.to_lowercase().contains(field),
        "the error names {field}:\n{log}"
    );
}
