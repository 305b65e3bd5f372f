//! The coordinator (`rill-load run`): sets up users and profiles, starts
//! the workers, shows progress, samples the edges, runs the broker probe,
//! and writes the report and the plot.
//!
//! [`run`] goes through the phases in order: set-up (users and profiles,
//! through the api), start (one worker process per plan), connect (the
//! ramp; an idle run samples the edges at half), the broker probe, send
//! and drain, then the report from what was measured. The phases from the
//! connect on are methods of a `Run`, which holds what they share: the
//! options, the deadline, the workers, the progress bar and the edges'
//! samples so far.
//!
//! - `plans`: how many workers and source addresses, and which sessions
//!   each worker opens.
//! - `workers`: the worker processes, what they have reported, the
//!   progress bar.
//! - `totals`: the workers' results added up.
//! - `measured`: what a run measured, and the report built from it.

mod measured;
mod plans;
mod totals;
mod workers;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use indicatif::ProgressBar;

use crate::cli::{RunArgs, TransportMix};
use crate::edge_view::EdgeView;
use crate::intervals::IntervalPlan;
use crate::plan::{GO, WorkerResult};
use crate::probe::{self, ProbeReport};
use crate::procfs;
use crate::report::{self, Report, Setup};
use crate::setup::{self, Population};
use crate::stats::now_us;

use measured::{EdgeSamples, Measured, cpu_between, cpu_of};
use plans::Layout;
use totals::Totals;
use workers::{State, Workers};

pub async fn run(args: Box<RunArgs>) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let loadavg_before = report::loadavg();
    let deadline = started + Duration::from_secs_f64(args.timeout_secs());

    let population = set_up(&args, deadline).await?;
    let layout = Layout::of(&args);
    let plans = plans::plans(&args, &population, layout);
    // Before the workers start: the memory per session counts from here.
    let before = procfs::total(&args.edge_pids);
    let mut run = Run {
        args: &args,
        deadline,
        edges: EdgeSamples {
            before,
            ..EdgeSamples::default()
        },
        workers: Workers::start(&plans).await?,
        bar: workers::progress_bar(args.progress, args.sessions()),
    };
    run.connect(plans.iter().all(|p| p.pause_at_half)).await?;
    let probe = run.probe().await?;
    let sent = run.send().await?;
    let edges = run.edges;
    let results = run.finish().await;

    let measured = Measured {
        started_at_unix,
        loadavg_before,
        layout,
        setup: Setup {
            seconds: population.seconds,
            users_created: population.users_created,
            bindings_added: population.bindings_added,
        },
        totals: Totals::of(&results, population.profiles.len(), sent.interval_plan),
        edges,
        send_secs: sent.secs,
        cpu_secs_sending_by_process: sent.cpu_secs_by_process,
        probe,
        edge_view: sent.edge_view,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    let report = measured.report(&args);
    write_report(&args, &report)?;
    if let Some(path) = &args.svg {
        write_plot(path, &args, &report, &measured.totals)?;
    }
    crate::summary::print(&report);
    Ok(())
}

/// The users and profiles: made up for the Socket.IO peer, else created
/// through the api before `deadline`.
async fn set_up(args: &RunArgs, deadline: Instant) -> anyhow::Result<Population> {
    let population = if args.transport == TransportMix::Socketio {
        setup::made_up(args.profiles, args.users)
    } else {
        let api = args.api.clone().unwrap_or_else(|| args.urls[0].clone());
        let api_key = args
            .api_key
            .as_ref()
            .context("no api key (--api-key or RILL_LOAD_API_KEY)")?;
        eprintln!(
            "rill-load: creating {} profiles x {} users through {api}",
            args.profiles, args.users
        );
        tokio::time::timeout_at(
            deadline.into(),
            setup::populate(
                &api,
                api_key,
                args.profiles,
                args.users,
                args.testdata_max_users,
                args.testdata_max_profiles,
            ),
        )
        .await
        .context("setup ran out of time")?
        .context("setup through the api")?
    };
    eprintln!("rill-load: set up in {:.1} s", population.seconds);
    Ok(population)
}

/// A run once its workers have started: what the phases share.
struct Run<'a> {
    args: &'a RunArgs,
    /// The whole run stops at this point (`--timeout`).
    deadline: Instant,
    workers: Workers,
    bar: ProgressBar,
    /// The edges' samples, filled in phase by phase.
    edges: EdgeSamples,
}

/// What the sending phase measured, besides the edges.
struct Sent {
    /// The intervals the workers put each delivery in.
    interval_plan: IntervalPlan,
    /// From the first send to the workers' results.
    secs: f64,
    cpu_secs_by_process: BTreeMap<String, f64>,
    edge_view: Option<EdgeView>,
}

impl Run<'_> {
    /// Phase 1: every worker connects its sessions; in an idle run
    /// (`pause_at_half`), half of them first, then the edges' memory is
    /// sampled, then the rest.
    async fn connect(&mut self, pause_at_half: bool) -> anyhow::Result<()> {
        let settle = Duration::from_secs_f64(self.args.settle);
        let pids = &self.args.edge_pids;
        if pause_at_half {
            self.workers
                .wait_until(
                    &self.bar,
                    "connecting (first half)",
                    self.deadline,
                    State::all_half,
                )
                .await?;
            tokio::time::sleep(settle).await;
            let connected = self.workers.state().total().connected;
            self.edges.at_half = Some((connected, procfs::total(pids)));
            self.workers.tell_all(b"more\n").await?;
        }
        self.workers
            .wait_until(&self.bar, "connecting", self.deadline, State::all_connected)
            .await?;
        tokio::time::sleep(settle).await;
        self.edges.idle = procfs::total(pids);
        Ok(())
    }

    /// The broker probe, alone, at the same rate and for the same time,
    /// before the sessions send: run together, each would add its load to
    /// the other's latency on this 2-core machine.
    async fn probe(&self) -> anyhow::Result<Option<ProbeReport>> {
        let args = self.args;
        let Some(brokers) = &args.broker else {
            return Ok(None);
        };
        self.bar.set_message("broker probe");
        let report = probe::run(
            brokers,
            &args.probe_topic,
            args.probe_fetch_wait_ms,
            args.rate,
            Duration::from_secs_f64(args.duration),
            Duration::from_secs_f64(args.drain),
            Duration::from_secs_f64(args.interval_secs),
        )
        .await
        .context("broker probe")?;
        Ok(Some(report))
    }

    /// Phase 2: send (or idle) for the duration, then drain, until every
    /// worker's result is in; the edges are sampled at the start, a second
    /// before the duration's end, and at the end.
    async fn send(&mut self) -> anyhow::Result<Sent> {
        let args = self.args;
        self.edges.start = procfs::total(&args.edge_pids);
        let cpu_start = cpu_of(&args.cpu_pids);
        let started = Instant::now();
        // Every worker buckets its deliveries into the same intervals, from
        // this start, by the send time in each message.
        let interval_plan = IntervalPlan::new(now_us(), args.duration, args.interval_secs);
        let go = format!("{GO}{}\n", serde_json::to_string(&interval_plan)?);
        self.workers.tell_all(go.as_bytes()).await?;
        self.bar.set_length(args.sessions());
        // A second before the run's end: idle sessions have sat for the whole
        // duration, and the allocator has given back what the ramp freed.
        let hold = Duration::from_secs_f64((args.duration - 1.0).max(0.0));
        let held = &mut self.edges.held;
        self.workers
            .wait_for_results(&self.bar, self.deadline, || {
                if held.is_none() && started.elapsed() >= hold {
                    *held = Some(procfs::total(&args.edge_pids));
                }
            })
            .await?;
        self.edges.end = procfs::total(&args.edge_pids);
        let cpu_end = cpu_of(&args.cpu_pids);
        let edge_view = match args.transport {
            TransportMix::Socketio => None,
            _ => crate::edge_view::scrape(&args.urls).await,
        };
        Ok(Sent {
            interval_plan,
            secs: started.elapsed().as_secs_f64(),
            cpu_secs_by_process: cpu_between(&cpu_start, &cpu_end),
            edge_view,
        })
    }

    /// Clears the progress bar, lets the workers exit, and returns their
    /// results.
    async fn finish(self) -> Vec<WorkerResult> {
        self.bar.finish_and_clear();
        self.workers.finish().await
    }
}

/// The JSON report to `--out`, or to stdout.
fn write_report(args: &RunArgs, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("write {}", path.display()))?;
            eprintln!("rill-load: report in {}", path.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// The latency plot to `path`: the sessions' send to receive beside the
/// broker probe's produce to consume, over the run and per interval.
fn write_plot(path: &Path, args: &RunArgs, report: &Report, totals: &Totals) -> anyhow::Result<()> {
    let rill = format!("{} send to receive", args.label);
    let broker = "broker produce to consume";
    let mut series = vec![(rill.clone(), &totals.latency)];
    let mut over_time = vec![(rill, &totals.latency_by_interval)];
    if let Some(probe) = &report.broker_probe {
        if let Some(h) = &probe.histogram {
            series.push((broker.to_owned(), h));
        }
        if let Some(i) = &probe.intervals {
            over_time.push((broker.to_owned(), i));
        }
    }
    let title = format!(
        "{}: {} sessions, {} msg/s ({})",
        args.label,
        report.connect.connected,
        args.rate,
        report.commit.chars().take(12).collect::<String>()
    );
    std::fs::write(path, crate::svg::plot(&title, &series, &over_time))
        .with_context(|| format!("write {}", path.display()))
}
