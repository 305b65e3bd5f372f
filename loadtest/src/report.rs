//! The run's JSON report, with the command, the commit and the machine.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::intervals::IntervalSummary;
use crate::probe::ProbeReport;
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub command: String,
    pub commit: String,
    pub started_at_unix: u64,
    pub wall_secs: f64,
    pub machine: Machine,
    pub config: serde_json::Value,
    pub setup: Setup,
    pub connect: Connect,
    pub errors: BTreeMap<String, u64>,
    pub messages: Messages,
    pub deliveries: Deliveries,
    /// Send to receive, over the whole run.
    pub latency: Option<Summary>,
    /// Send to receive per `--interval-secs` of the sending phase, each
    /// message in the interval of its send time: flat if the latency
    /// holds over the run. Empty when nothing was delivered.
    pub latency_by_interval: Vec<IntervalSummary>,
    pub ack_latency: Option<Summary>,
    pub edges: Edges,
    /// CPU seconds of each `--cpu-pid` process from the first send to the
    /// end of the drain (the broker probe, set-up and ramp excluded).
    pub cpu_secs_sending_by_process: BTreeMap<String, f64>,
    pub broker_probe: Option<ProbeReport>,
    /// The edges' own send-to-Kafka-ack histogram (none for the peer).
    pub edge_view: Option<crate::edge_view::EdgeView>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Setup {
    pub seconds: f64,
    pub users_created: usize,
    pub bindings_added: usize,
}

#[derive(Debug, Serialize)]
pub struct Connect {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub acked: u64,
    pub unacked: u64,
    pub per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct Deliveries {
    /// Each acknowledged send times the sessions on its profile.
    pub expected: u64,
    pub received: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Sessions closed or cut after they had connected.
    pub disconnected: u64,
    pub per_second: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Edges {
    pub pids: Vec<u32>,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_end_kib: u64,
    /// (RSS with every session idle - RSS before) / sessions, `settle`
    /// seconds after the last connect: it still holds what the allocator
    /// has not yet given back of the ramp's freed memory.
    pub bytes_per_session: Option<f64>,
    /// RSS a second before the end of the run's duration (an idle run:
    /// after the sessions sat idle that long, past a heartbeat).
    pub rss_held_kib: Option<u64>,
    /// (RSS then - RSS before) / sessions: the idle cost once the
    /// allocator returned the ramp's freed memory.
    pub bytes_per_session_held: Option<f64>,
    /// Idle runs: sessions and RSS after the first half connected, and
    /// (RSS with all - RSS with half) / (all - half): the cost of one more
    /// session in a warmed-up process.
    pub sessions_at_half: Option<u64>,
    pub rss_half_kib: Option<u64>,
    pub marginal_bytes_per_session: Option<f64>,
    pub sessions_per_gib: Option<f64>,
    pub cpu_secs_sending: f64,
    /// The kernel's part of `cpu_secs_sending`.
    pub system_cpu_secs_sending: f64,
    pub cpu_percent_sending: f64,
    pub deliveries_per_cpu_sec: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub loadavg_before: String,
    pub loadavg_after: String,
    pub open_files_limit: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn loadavg() -> String {
    read("/proc/loadavg")
}

impl Machine {
    pub fn now(loadavg_before: String) -> Self {
        let mem_total_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let limit = read("/proc/self/limits")
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            mem_total_kib,
            kernel: read("/proc/sys/kernel/osrelease"),
            loadavg_before,
            loadavg_after: loadavg(),
            open_files_limit: limit,
        }
    }
}

/// `git rev-parse HEAD`, with `-dirty` when tracked files changed.
pub fn commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = run(&["rev-parse", "HEAD"]) else {
        return "unknown".into();
    };
    match run(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}
