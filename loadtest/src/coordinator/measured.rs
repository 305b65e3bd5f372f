//! What a run measured ([`Measured`]: the workers' results added up
//! ([`Totals`]), the edges' samples ([`EdgeSamples`]), the CPU of named
//! processes, the probe's and the edges' own view) and the report built
//! from it ([`Measured::report`]).

use std::collections::BTreeMap;

use crate::cli::RunArgs;
use crate::edge_view::EdgeView;
use crate::probe::ProbeReport;
use crate::procfs::{self, Sample};
use crate::report::{self, Connect, Deliveries, Edges, Machine, Messages, Report, Setup};
use crate::stats::Latency;

use super::plans::Layout;
use super::totals::Totals;

/// Everything the report says about a run, as the phases left it.
#[derive(Debug)]
pub struct Measured {
    pub started_at_unix: u64,
    pub loadavg_before: String,
    pub wall_secs: f64,
    pub layout: Layout,
    pub setup: Setup,
    pub totals: Totals,
    pub edges: EdgeSamples,
    /// From the first send to the workers' results (the drain included).
    pub send_secs: f64,
    pub cpu_secs_sending_by_process: BTreeMap<String, f64>,
    pub probe: Option<ProbeReport>,
    pub edge_view: Option<EdgeView>,
}

/// The edges' memory and CPU, summed over `--edge-pid`, through the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeSamples {
    /// Before the workers started.
    pub before: Sample,
    /// Idle runs: the sessions connected and the edges once the first
    /// half had.
    pub at_half: Option<(u64, Sample)>,
    /// Every session connected, `--settle` seconds after.
    pub idle: Sample,
    /// At the first send (after the broker probe).
    pub start: Sample,
    /// A second before the end of the sending's duration (none when the
    /// results came first).
    pub held: Option<Sample>,
    /// Once every worker's result is in.
    pub end: Sample,
}

/// The CPU of each named process, `None` for one that is gone.
pub fn cpu_of(pids: &[(String, u32)]) -> Vec<(String, Option<Sample>)> {
    pids.iter()
        .map(|(name, pid)| (name.clone(), procfs::sample(*pid)))
        .collect()
}

/// CPU seconds of each named process between two [`cpu_of`] samples, to
/// the hundredth; a process gone at either is left out.
pub fn cpu_between(
    start: &[(String, Option<Sample>)],
    end: &[(String, Option<Sample>)],
) -> BTreeMap<String, f64> {
    start
        .iter()
        .zip(end)
        .filter_map(|((name, start), (_, end))| {
            let secs = end.as_ref()?.cpu_secs - start.as_ref()?.cpu_secs;
            Some((name.clone(), (secs * 100.0).round() / 100.0))
        })
        .collect()
}

impl Measured {
    /// The run's report: the options and what was measured, with the
    /// commit and the machine as they are now.
    pub fn report(&self, args: &RunArgs) -> Report {
        let totals = &self.totals;
        let total = &totals.progress;
        let expected = totals.expected();
        let connected = total.connected;
        let connect_secs = totals.connect_secs;
        Report {
            label: args.label.clone(),
            command: args.command.join(" "),
            commit: report::commit(),
            started_at_unix: self.started_at_unix,
            wall_secs: self.wall_secs,
            machine: Machine::now(self.loadavg_before.clone()),
            config: config(args, self.layout),
            setup: self.setup,
            connect: Connect {
                attempted: args.sessions(),
                connected,
                failed: total.failed,
                seconds: connect_secs,
                per_second: if connect_secs > 0.0 {
                    connected as f64 / connect_secs
                } else {
                    0.0
                },
                latency: summary(&totals.connect_latency),
            },
            errors: totals.errors.clone(),
            messages: Messages {
                sent: total.sent,
                acked: total.acked,
                unacked: totals.unacked,
                per_second: total.acked as f64 / args.duration.max(0.001),
            },
            deliveries: Deliveries {
                expected,
                received: total.received,
                unique: totals.unique,
                lost: expected.saturating_sub(totals.unique),
                duplicated: totals.duplicates,
                disconnected: totals.disconnected,
                per_second: totals.unique as f64 / args.duration.max(0.001),
            },
            latency: summary(&totals.latency),
            latency_by_interval: if totals.latency_by_interval.is_empty() {
                Vec::new()
            } else {
                totals.latency_by_interval.summaries()
            },
            ack_latency: summary(&totals.ack_latency),
            edges: edges(
                &args.edge_pids,
                &self.edges,
                connected,
                totals.unique,
                self.send_secs,
            ),
            cpu_secs_sending_by_process: self.cpu_secs_sending_by_process.clone(),
            broker_probe: self.probe.clone(),
            edge_view: self.edge_view.clone(),
        }
    }
}

/// The report's `config`: the options that shape the load, and the
/// layout.
fn config(args: &RunArgs, layout: Layout) -> serde_json::Value {
    serde_json::json!({
        "urls": args.urls,
        "api": args.api,
        "transport": format!("{:?}", args.transport).to_lowercase(),
        "sse_percent": args.sse_percent,
        "profiles": args.profiles,
        "users_per_profile": args.users,
        "sessions": args.sessions(),
        "rate": args.rate,
        "duration_secs": args.duration,
        "ramp_per_sec": args.ramp,
        "body_bytes": args.body_bytes,
        "drain_secs": args.drain,
        "interval_secs": args.interval_secs,
        "workers": layout.workers,
        "source_ips": layout.source_ips,
    })
}

/// A histogram's summary, `None` when it is empty.
fn summary(latency: &Latency) -> Option<crate::stats::Summary> {
    (!latency.is_empty()).then(|| latency.summary())
}

/// The edges' part of the report: memory per session (after the ramp,
/// held, marginal) and CPU over the sending. No memory per session
/// without `--edge-pid` or sessions.
fn edges(
    pids: &[u32],
    samples: &EdgeSamples,
    connected: u64,
    unique: u64,
    send_secs: f64,
) -> Edges {
    let EdgeSamples {
        before,
        at_half,
        idle,
        start,
        held,
        end,
    } = *samples;
    let per_session = |rss_kib: u64| {
        (connected > 0 && !pids.is_empty())
            .then(|| (rss_kib as f64 - before.rss_kib as f64) * 1024.0 / connected as f64)
    };
    let bytes_per_session = per_session(idle.rss_kib);
    let cpu = end.cpu_secs - start.cpu_secs;
    Edges {
        pids: pids.to_vec(),
        rss_before_kib: before.rss_kib,
        rss_idle_kib: idle.rss_kib,
        rss_end_kib: end.rss_kib,
        rss_held_kib: held.map(|h| h.rss_kib),
        bytes_per_session_held: held.and_then(|h| per_session(h.rss_kib)),
        bytes_per_session,
        sessions_at_half: at_half.map(|(n, _)| n),
        rss_half_kib: at_half.map(|(_, s)| s.rss_kib),
        marginal_bytes_per_session: at_half.filter(|(n, _)| connected > *n).map(|(n, s)| {
            (idle.rss_kib as f64 - s.rss_kib as f64) * 1024.0 / (connected - n) as f64
        }),
        sessions_per_gib: bytes_per_session
            .filter(|b| *b > 0.0)
            .map(|b| (1u64 << 30) as f64 / b),
        cpu_secs_sending: cpu,
        system_cpu_secs_sending: end.system_cpu_secs - start.system_cpu_secs,
        cpu_percent_sending: 100.0 * cpu / send_secs.max(0.001),
        deliveries_per_cpu_sec: (cpu > 0.0).then(|| unique as f64 / cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::totals::example_results;
    use crate::intervals::IntervalPlan;
    use crate::stats::now_us;

    fn sample(rss_kib: u64, cpu_secs: f64) -> Sample {
        Sample {
            rss_kib,
            cpu_secs,
            system_cpu_secs: cpu_secs / 4.0,
        }
    }

    #[test]
    fn cpu_is_counted_for_processes_alive_at_both_ends() {
        let start = [
            ("kafka".to_owned(), Some(sample(1, 10.0))),
            ("gone".to_owned(), Some(sample(1, 1.0))),
            ("late".to_owned(), None),
        ];
        let end = [
            ("kafka".to_owned(), Some(sample(1, 12.346))),
            ("gone".to_owned(), None),
            ("late".to_owned(), Some(sample(1, 1.0))),
        ];
        let cpu = cpu_between(&start, &end);
        assert_eq!(cpu, BTreeMap::from([("kafka".to_owned(), 2.35)]));
    }

    #[test]
    fn the_edges_memory_and_cpu_per_session_and_delivery() {
        let samples = EdgeSamples {
            before: sample(10_000, 0.0),
            at_half: Some((500, sample(11_000, 0.0))),
            idle: sample(12_000, 0.0),
            start: sample(12_000, 5.0),
            held: Some(sample(11_500, 6.0)),
            end: sample(12_500, 9.0),
        };
        let watched = edges(&[7], &samples, 1_000, 8_000, 2.0);
        // 2,000 KiB more for 1,000 sessions.
        assert_eq!(watched.bytes_per_session, Some(2048.0));
        assert_eq!(watched.bytes_per_session_held, Some(1536.0));
        // The second half: 1,000 KiB for 500 sessions.
        assert_eq!(watched.marginal_bytes_per_session, Some(2048.0));
        assert_eq!(watched.sessions_per_gib, Some(524_288.0));
        assert_eq!(
            (watched.sessions_at_half, watched.rss_half_kib),
            (Some(500), Some(11_000))
        );
        assert_eq!(
            (
                watched.rss_before_kib,
                watched.rss_idle_kib,
                watched.rss_end_kib,
                watched.rss_held_kib
            ),
            (10_000, 12_000, 12_500, Some(11_500))
        );
        assert_eq!(watched.cpu_secs_sending, 4.0);
        assert_eq!(watched.system_cpu_secs_sending, 1.0);
        assert_eq!(watched.cpu_percent_sending, 200.0);
        assert_eq!(watched.deliveries_per_cpu_sec, Some(2_000.0));

        let unwatched = edges(&[], &samples, 1_000, 8_000, 2.0);
        assert_eq!(unwatched.bytes_per_session, None, "no --edge-pid");
        assert_eq!(unwatched.bytes_per_session_held, None);
        assert_eq!(unwatched.sessions_per_gib, None);
        let nobody = edges(&[7], &samples, 0, 0, 0.0);
        assert_eq!(nobody.bytes_per_session, None, "no sessions");
        assert_eq!(nobody.marginal_bytes_per_session, None);
        assert!(
            (nobody.cpu_percent_sending - 400_000.0).abs() < 1e-6,
            "over at least 1 ms"
        );
    }

    #[test]
    fn the_report_keeps_its_fields() {
        let plan = IntervalPlan::new(now_us(), 2.0, 1.0);
        let args = RunArgs {
            urls: vec!["http://a".into()],
            profiles: 2,
            users: 5,
            duration: 2.0,
            edge_pids: vec![7],
            label: "unit".into(),
            command: vec!["rill-load".into(), "run".into()],
            ..RunArgs::default()
        };
        let measured = Measured {
            started_at_unix: 1_700_000_000,
            loadavg_before: "0.5 0.5 0.5 1/100 1".into(),
            wall_secs: 9.0,
            layout: Layout {
                workers: 2,
                source_ips: 1,
            },
            setup: Setup {
                seconds: 1.5,
                users_created: 10,
                bindings_added: 10,
            },
            totals: Totals::of(&example_results(plan), 2, plan),
            edges: EdgeSamples::default(),
            send_secs: 4.0,
            cpu_secs_sending_by_process: BTreeMap::from([("kafka".to_owned(), 1.25)]),
            probe: None,
            edge_view: None,
        };
        let report = serde_json::to_value(measured.report(&args)).expect("json");
        let mut keys: Vec<&str> = report
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ack_latency",
                "broker_probe",
                "command",
                "commit",
                "config",
                "connect",
                "cpu_secs_sending_by_process",
                "deliveries",
                "edge_view",
                "edges",
                "errors",
                "label",
                "latency",
                "latency_by_interval",
                "machine",
                "messages",
                "setup",
                "started_at_unix",
                "wall_secs",
            ]
        );
        assert_eq!(report["command"], "rill-load run");
        assert_eq!(report["config"]["workers"], 2);
        assert_eq!(report["config"]["interval_secs"], 60.0);
        assert_eq!(report["connect"]["attempted"], 10);
        assert_eq!(report["connect"]["per_second"], 4.0, "10 in 2.5 s");
        assert_eq!(report["messages"]["per_second"], 5.0);
        assert_eq!(report["deliveries"]["expected"], 50);
        assert_eq!(report["deliveries"]["lost"], 12);
        assert_eq!(report["deliveries"]["per_second"], 19.0);
        assert_eq!(report["latency"]["count"], 3);
        assert_eq!(
            report["latency_by_interval"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(report["setup"]["users_created"], 10);
        assert_eq!(report["cpu_secs_sending_by_process"]["kafka"], 1.25);
        assert_eq!(report["machine"]["loadavg_before"], "0.5 0.5 0.5 1/100 1");
    }
}
