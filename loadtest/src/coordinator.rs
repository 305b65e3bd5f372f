//! The coordinator (`rill-load run`): sets up users and profiles, starts
//! the workers, shows progress, samples the edges, runs the broker probe,
//! and writes the report and the plot.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdin, Command};

use crate::cli::{RunArgs, TransportMix};
use crate::plan::{Progress, SessionPlan, Transport, WorkerMessage, WorkerPlan, WorkerResult};
use crate::probe;
use crate::procfs;
use crate::report::{self, Connect, Deliveries, Edges, Machine, Messages, Report, Setup};
use crate::setup::{self, Population};
use crate::stats::Latency;

/// Sessions per worker process by default: well under the 20,000 open
/// files one process may hold here.
const SESSIONS_PER_WORKER: u64 = 12_000;
/// Sessions per source address by default (about 28,000 ephemeral ports
/// each).
const SESSIONS_PER_SOURCE_IP: u64 = 10_000;

#[derive(Debug, Default)]
struct State {
    progress: Vec<Progress>,
    connected: Vec<bool>,
    half: Vec<bool>,
    results: Vec<Option<WorkerResult>>,
    exited: Vec<bool>,
}

pub async fn run(args: Box<RunArgs>) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let loadavg_before = report::loadavg();
    let sessions = args.sessions();
    let timeout = args
        .timeout
        .unwrap_or(args.duration + 600.0 + sessions as f64 / args.ramp);
    let deadline = started + Duration::from_secs_f64(timeout);

    let population = if args.transport == TransportMix::Socketio {
        setup::made_up(args.profiles, args.users)
    } else {
        let api = args.api.clone().unwrap_or_else(|| args.urls[0].clone());
        eprintln!(
            "rill-load: creating {} profiles x {} users through {api}",
            args.profiles, args.users
        );
        tokio::time::timeout_at(
            deadline.into(),
            setup::populate(
                &api,
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

    let workers = args
        .workers
        .unwrap_or_else(|| sessions.div_ceil(SESSIONS_PER_WORKER) as u32)
        .max(1);
    let source_ips = args
        .source_ips
        .unwrap_or_else(|| sessions.div_ceil(SESSIONS_PER_SOURCE_IP).clamp(1, 254) as u32);
    let plans = plans(&args, &population, workers, source_ips, timeout);

    let edges_before = procfs::total(&args.edge_pids);
    let state = Arc::new(Mutex::new(State {
        progress: vec![Progress::default(); workers as usize],
        connected: vec![false; workers as usize],
        half: vec![false; workers as usize],
        results: vec![None; workers as usize],
        exited: vec![false; workers as usize],
    }));
    let mut children: Vec<(Child, ChildStdin)> = Vec::new();
    let exe = std::env::current_exe().context("own executable")?;
    for plan in &plans {
        let mut child = Command::new(&exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start a worker")?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut line = serde_json::to_string(plan)?;
        line.push('\n');
        stdin.write_all(line.as_bytes()).await?;
        let (state, index) = (state.clone(), plan.index as usize);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<WorkerMessage>(&line) else {
                    continue;
                };
                let mut state = state.lock().expect("state lock");
                match message {
                    WorkerMessage::Progress(p) => state.progress[index] = p,
                    WorkerMessage::Half(p) => {
                        state.progress[index] = p;
                        state.half[index] = true;
                    }
                    WorkerMessage::Connected(p) => {
                        state.progress[index] = p;
                        state.connected[index] = true;
                    }
                    WorkerMessage::Result(r) => {
                        state.progress[index] = r.progress.clone();
                        state.results[index] = Some(*r);
                    }
                }
            }
            state.lock().expect("state lock").exited[index] = true;
        });
        children.push((child, stdin));
    }

    let bar = if args.progress {
        ProgressBar::new(sessions)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );

    // Phase 1: every worker connects its sessions; in an idle run, half of
    // them first, then the edges' memory is sampled, then the rest.
    let mut at_half = None;
    if plans.iter().all(|p| p.pause_at_half) {
        wait_until(&state, &bar, "connecting (first half)", deadline, |s| {
            s.half.iter().all(|c| *c)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let connected = sum(&state.lock().expect("state lock").progress).connected;
        at_half = Some((connected, procfs::total(&args.edge_pids)));
        for (_, stdin) in &mut children {
            stdin.write_all(b"more\n").await?;
        }
    }
    wait_until(&state, &bar, "connecting", deadline, |s| {
        s.connected.iter().all(|c| *c)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let edges_idle = procfs::total(&args.edge_pids);

    // The broker probe, alone, at the same rate and for the same time,
    // before the sessions send: run together, each would add its load to
    // the other's latency on this 2-core machine.
    let probe = match &args.broker {
        Some(brokers) => {
            bar.set_message("broker probe");
            let report = probe::run(
                brokers,
                &args.probe_topic,
                args.probe_fetch_wait_ms,
                args.rate,
                Duration::from_secs_f64(args.duration),
                Duration::from_secs_f64(args.drain),
            )
            .await
            .context("broker probe")?;
            Some(report)
        }
        None => None,
    };

    // Phase 2: send (or idle) for the duration, then drain.
    let edges_start = procfs::total(&args.edge_pids);
    let send_started = Instant::now();
    for (_, stdin) in &mut children {
        stdin.write_all(b"go\n").await?;
    }
    bar.set_length(sessions);
    // A second before the run's end: idle sessions have sat for the whole
    // duration, and the allocator has given back what the ramp freed.
    let hold = Duration::from_secs_f64((args.duration - 1.0).max(0.0));
    let mut edges_held = None;
    loop {
        if edges_held.is_none() && send_started.elapsed() >= hold {
            edges_held = Some(procfs::total(&args.edge_pids));
        }
        {
            let state = state.lock().expect("state lock");
            show(&bar, &state, "sending");
            if state.results.iter().all(Option::is_some) {
                break;
            }
            if state
                .exited
                .iter()
                .zip(&state.results)
                .any(|(e, r)| *e && r.is_none())
            {
                anyhow::bail!("a worker exited without a result (see its error above)");
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the run's time ran out while sending");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let edges_end = procfs::total(&args.edge_pids);
    let edge_view = match args.transport {
        TransportMix::Socketio => None,
        _ => crate::edge_view::scrape(&args.urls).await,
    };
    let send_secs = send_started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    for (mut child, stdin) in children {
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }

    let results: Vec<WorkerResult> = state
        .lock()
        .expect("state lock")
        .results
        .iter_mut()
        .filter_map(Option::take)
        .collect();
    let report = build_report(
        &args,
        &population,
        &results,
        started_unix,
        loadavg_before,
        (edges_before, edges_idle, edges_start, edges_end),
        edges_held,
        at_half,
        send_secs,
        probe,
        edge_view,
        workers,
        source_ips,
        started.elapsed().as_secs_f64(),
    );
    let mut latency = Latency::default();
    for r in &results {
        latency.merge(&r.latency);
    }
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("write {}", path.display()))?;
            eprintln!("rill-load: report in {}", path.display());
        }
        None => println!("{json}"),
    }
    if let Some(path) = &args.svg {
        let mut series = vec![(format!("{} send to receive", args.label), &latency)];
        let probe_histogram = report
            .broker_probe
            .as_ref()
            .and_then(|p| p.histogram.clone());
        if let Some(h) = &probe_histogram {
            series.push(("broker produce to consume".to_owned(), h));
        }
        let title = format!(
            "{}: {} sessions, {} msg/s ({})",
            args.label,
            report.connect.connected,
            args.rate,
            report.commit.chars().take(12).collect::<String>()
        );
        std::fs::write(path, crate::svg::plot(&title, &series))
            .with_context(|| format!("write {}", path.display()))?;
    }
    summary_line(&report);
    Ok(())
}

fn sum(progress: &[Progress]) -> Progress {
    progress.iter().fold(Progress::default(), |a, p| Progress {
        connected: a.connected + p.connected,
        failed: a.failed + p.failed,
        sent: a.sent + p.sent,
        acked: a.acked + p.acked,
        received: a.received + p.received,
    })
}

fn plans(
    args: &RunArgs,
    population: &Population,
    workers: u32,
    source_ips: u32,
    timeout: f64,
) -> Vec<WorkerPlan> {
    let ips: Vec<Ipv4Addr> = (1..=source_ips)
        .map(|n| Ipv4Addr::new(127, 0, 0, n as u8))
        .collect();
    let mut plans: Vec<WorkerPlan> = (0..workers)
        .map(|index| WorkerPlan {
            index,
            sessions: Vec::new(),
            profiles: population.profiles.len() as u32,
            ramp_per_sec: args.ramp / f64::from(workers),
            rate: args.rate / f64::from(workers),
            duration_secs: args.duration,
            drain_secs: args.drain,
            source_ips: ips.clone(),
            body_bytes: args.body_bytes,
            connect_timeout_secs: args.connect_timeout,
            deadline_secs: timeout,
            pause_at_half: args.rate == 0.0,
        })
        .collect();
    let mut i = 0usize;
    for (p, (profile_id, users)) in population.profiles.iter().enumerate() {
        for user in users {
            let transport = match args.transport {
                TransportMix::Ws => Transport::Ws,
                TransportMix::Sse => Transport::Sse,
                TransportMix::Socketio => Transport::Socketio,
                TransportMix::Mix => {
                    if (i % 100) < args.sse_percent as usize {
                        Transport::Sse
                    } else {
                        Transport::Ws
                    }
                }
            };
            plans[i % workers as usize].sessions.push(SessionPlan {
                url: args.urls[i % args.urls.len()].clone(),
                transport,
                profile: p as u32,
                profile_id: *profile_id,
                user_id: *user,
            });
            i += 1;
        }
    }
    plans
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &RunArgs,
    population: &Population,
    results: &[WorkerResult],
    started_unix: u64,
    loadavg_before: String,
    (before, idle, start, end): (
        procfs::Sample,
        procfs::Sample,
        procfs::Sample,
        procfs::Sample,
    ),
    held: Option<procfs::Sample>,
    at_half: Option<(u64, procfs::Sample)>,
    send_secs: f64,
    probe: Option<probe::ProbeReport>,
    edge_view: Option<crate::edge_view::EdgeView>,
    workers: u32,
    source_ips: u32,
    wall_secs: f64,
) -> Report {
    let profiles = population.profiles.len();
    let mut sessions_per_profile = vec![0u64; profiles];
    let mut acked_per_profile = vec![0u64; profiles];
    let mut errors = std::collections::BTreeMap::new();
    let (mut latency, mut ack, mut connect_latency) =
        (Latency::default(), Latency::default(), Latency::default());
    let mut progress = Vec::new();
    let (mut unique, mut duplicates, mut disconnected, mut unacked) = (0, 0, 0, 0);
    let mut connect_secs: f64 = 0.0;
    for r in results {
        for (p, n) in r.sessions_per_profile.iter().enumerate() {
            sessions_per_profile[p] += n;
        }
        for (p, n) in r.acked_per_profile.iter().enumerate() {
            acked_per_profile[p] += n;
        }
        for (kind, n) in &r.errors {
            *errors.entry(kind.clone()).or_insert(0) += n;
        }
        latency.merge(&r.latency);
        ack.merge(&r.ack_latency);
        connect_latency.merge(&r.connect_latency);
        progress.push(r.progress.clone());
        unique += r.unique_received;
        duplicates += r.duplicates;
        disconnected += r.disconnected;
        unacked += r.unacked;
        connect_secs = connect_secs.max(r.connect_secs);
    }
    let total = sum(&progress);
    let expected: u64 = sessions_per_profile
        .iter()
        .zip(&acked_per_profile)
        .map(|(s, a)| s * a)
        .sum();
    let connected = total.connected;
    let bytes_per_session = (connected > 0 && !args.edge_pids.is_empty())
        .then(|| (idle.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / connected as f64);
    let cpu = end.cpu_secs - start.cpu_secs;
    Report {
        label: args.label.clone(),
        command: args.command.join(" "),
        commit: report::commit(),
        started_at_unix: started_unix,
        wall_secs,
        machine: Machine::now(loadavg_before),
        config: serde_json::json!({
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
            "workers": workers,
            "source_ips": source_ips,
        }),
        setup: Setup {
            seconds: population.seconds,
            users_created: population.users_created,
            bindings_added: population.bindings_added,
        },
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
            latency: (!connect_latency.is_empty()).then(|| connect_latency.summary()),
        },
        errors,
        messages: Messages {
            sent: total.sent,
            acked: total.acked,
            unacked,
            per_second: total.acked as f64 / args.duration.max(0.001),
        },
        deliveries: Deliveries {
            expected,
            received: total.received,
            unique,
            lost: expected.saturating_sub(unique),
            duplicated: duplicates,
            disconnected,
            per_second: unique as f64 / args.duration.max(0.001),
        },
        latency: (!latency.is_empty()).then(|| latency.summary()),
        ack_latency: (!ack.is_empty()).then(|| ack.summary()),
        edges: Edges {
            pids: args.edge_pids.clone(),
            rss_before_kib: before.rss_kib,
            rss_idle_kib: idle.rss_kib,
            rss_end_kib: end.rss_kib,
            rss_held_kib: held.map(|h| h.rss_kib),
            bytes_per_session_held: held
                .filter(|_| connected > 0 && !args.edge_pids.is_empty())
                .map(|h| (h.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / connected as f64),
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
        },
        broker_probe: probe,
        edge_view,
    }
}

fn summary_line(report: &Report) {
    let l = report.latency.as_ref();
    eprintln!(
        "rill-load: {}: connected {}/{} (failed {}), sent {} acked {}, deliveries {} of {} expected (lost {}, dup {}), p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms; edge {:?} B/session ({:?} marginal, {:?} held), {:.2} CPU-s, {:?} deliveries/CPU-s",
        report.label,
        report.connect.connected,
        report.connect.attempted,
        report.connect.failed,
        report.messages.sent,
        report.messages.acked,
        report.deliveries.unique,
        report.deliveries.expected,
        report.deliveries.lost,
        report.deliveries.duplicated,
        l.map_or(0.0, |l| l.p50_ms),
        l.map_or(0.0, |l| l.p99_ms),
        l.map_or(0.0, |l| l.p999_ms),
        l.map_or(0.0, |l| l.max_ms),
        report.edges.bytes_per_session.map(|b| b.round()),
        report.edges.marginal_bytes_per_session.map(|b| b.round()),
        report.edges.bytes_per_session_held.map(|b| b.round()),
        report.edges.cpu_secs_sending,
        report.edges.deliveries_per_cpu_sec.map(|d| d.round()),
    );
    if let Some(probe) = &report.broker_probe
        && let Some(e) = &probe.end_to_end
    {
        eprintln!(
            "rill-load: broker probe: {} sent, {} received, p50 {:.2} ms p99 {:.2} ms",
            probe.sent, probe.received, e.p50_ms, e.p99_ms
        );
    }
    if let Some(v) = &report.edge_view {
        eprintln!(
            "rill-load: the edges' send to Kafka ack: {} sends, p50 <= {:?} ms, p90 <= {:?} ms, p99 <= {:?} ms",
            v.send_ack_count,
            v.send_ack_p50_ms_at_most,
            v.send_ack_p90_ms_at_most,
            v.send_ack_p99_ms_at_most
        );
    }
}

/// The progress bar's position and message for `phase`.
fn show(bar: &ProgressBar, state: &State, phase: &str) {
    let total = sum(&state.progress);
    bar.set_position(total.connected + total.failed);
    bar.set_message(format!(
        "{phase}: connected {} failed {} sent {} acked {} received {}",
        total.connected, total.failed, total.sent, total.acked, total.received
    ));
}

/// Waits, showing `stage`, until `done` holds for the workers' state; fails
/// when a worker exits or the run's time runs out first.
async fn wait_until(
    state: &Mutex<State>,
    bar: &ProgressBar,
    stage: &str,
    deadline: Instant,
    done: impl Fn(&State) -> bool,
) -> anyhow::Result<()> {
    loop {
        {
            let state = state.lock().expect("state lock");
            show(bar, &state, stage);
            if done(&state) {
                return Ok(());
            }
            if state.exited.iter().any(|e| *e) {
                anyhow::bail!("a worker exited while connecting (see its error above)");
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the run's time ran out while connecting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
