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
use crate::intervals::{IntervalPlan, Intervals};
use crate::plan::{GO, Progress, SessionPlan, Transport, WorkerMessage, WorkerPlan, WorkerResult};
use crate::probe;
use crate::procfs;
use crate::report::{self, Connect, Deliveries, Edges, Machine, Messages, Report, Setup};
use crate::setup::{self, Population};
use crate::stats::{Latency, now_us};

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
    let timeout = args.timeout_secs();
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
                Duration::from_secs_f64(args.interval_secs),
            )
            .await
            .context("broker probe")?;
            Some(report)
        }
        None => None,
    };

    // Phase 2: send (or idle) for the duration, then drain.
    let edges_start = procfs::total(&args.edge_pids);
    let cpu_start = cpu_of(&args.cpu_pids);
    let send_started = Instant::now();
    // Every worker buckets its deliveries into the same intervals, from
    // this start, by the send time in each message.
    let interval_plan = IntervalPlan::new(now_us(), args.duration, args.interval_secs);
    let go = format!("{GO}{}\n", serde_json::to_string(&interval_plan)?);
    for (_, stdin) in &mut children {
        stdin.write_all(go.as_bytes()).await?;
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
    let cpu_end = cpu_of(&args.cpu_pids);
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
    let mut latency = Latency::default();
    let mut latency_by_interval = Intervals::new(interval_plan);
    for r in &results {
        latency.merge(&r.latency);
        latency_by_interval.merge(&r.latency_by_interval);
    }
    let cpu_sending = cpu_start
        .iter()
        .zip(&cpu_end)
        .filter_map(|((name, start), (_, end))| {
            let secs = end.as_ref()?.cpu_secs - start.as_ref()?.cpu_secs;
            Some((name.clone(), (secs * 100.0).round() / 100.0))
        })
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
        (&latency_by_interval, cpu_sending),
        workers,
        source_ips,
        started.elapsed().as_secs_f64(),
    );
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("write {}", path.display()))?;
            eprintln!("rill-load: report in {}", path.display());
        }
        None => println!("{json}"),
    }
    if let Some(path) = &args.svg {
        let rill = format!("{} send to receive", args.label);
        let broker = "broker produce to consume";
        let mut series = vec![(rill.clone(), &latency)];
        let mut over_time = vec![(rill, &latency_by_interval)];
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
            .with_context(|| format!("write {}", path.display()))?;
    }
    crate::summary::print(&report);
    Ok(())
}

/// The CPU of each named process, `None` for one that is gone.
fn cpu_of(pids: &[(String, u32)]) -> Vec<(String, Option<procfs::Sample>)> {
    pids.iter()
        .map(|(name, pid)| (name.clone(), procfs::sample(*pid)))
        .collect()
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
    (latency_by_interval, cpu_secs_sending_by_process): (
        &Intervals,
        std::collections::BTreeMap<String, f64>,
    ),
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
            "interval_secs": args.interval_secs,
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
        latency_by_interval: if latency_by_interval.is_empty() {
            Vec::new()
        } else {
            latency_by_interval.summaries()
        },
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
        cpu_secs_sending_by_process,
        broker_probe: probe,
        edge_view,
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
