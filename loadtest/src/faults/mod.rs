//! `rill-load faults`: clients that live through faults, and a verdict on
//! what each saw.
//!
//! Users and profiles come from the api ([`crate::setup`]). Each user is a
//! client ([`client`]) with one session, WebSocket or SSE, through the
//! ingress; it comes back after every disconnect with its last position.
//! A sender hands sends round robin to the connected clients at the rate,
//! for the duration; after the settle time every client's view is judged
//! against everything acknowledged ([`verdict`]), the store's history too,
//! and the run is drawn second by second with the scenario's fault marks
//! ([`timeline`]). [`log`] holds what is recorded; [`args`] the options.

pub mod args;
pub mod client;
pub mod log;
pub mod timeline;
pub mod verdict;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use self::args::FaultArgs;
use self::client::{Shared, now_ms};
use self::log::{ClientLog, Outcome, QuitPlan, SendLog};
use crate::login::TokenKey;

/// How long every client may take to open its first session.
const ALL_CONNECTED: Duration = Duration::from_secs(60);
/// Sends a client may have waiting before more count as unanswered.
const CLIENT_QUEUE: usize = 64;

pub async fn run(args: FaultArgs) -> anyhow::Result<()> {
    let population = crate::setup::populate(
        &args.api,
        &args.api_key,
        args.profiles,
        args.users,
        10_000,
        1_000,
    )
    .await
    .context("setting up users and profiles")?;
    let run_start = now_ms();
    let plan_ms = |fraction: f64| run_start + (args.duration * fraction * 1000.0) as u64;
    let mut logs = Vec::new();
    for (profile, users) in &population.profiles {
        for (i, user) in users.iter().enumerate() {
            let sse = (i as u32) * 100 < args.sse_percent * args.users;
            let transport = if sse { "sse" } else { "ws" };
            let mut log = ClientLog::new(logs.len(), *user, *profile, transport);
            // The last client closes for good; the first gives up at its
            // first disconnect after a fifth of the run; then alternately.
            log.quit_plan = match i as u32 {
                n if n == args.users - 1 && args.quitters >= 1 => {
                    Some(QuitPlan::CloseAt(plan_ms(0.4)))
                }
                n if n < args.quitters.saturating_sub(1) => {
                    Some(QuitPlan::VanishAfter(plan_ms(0.2)))
                }
                _ => None,
            };
            logs.push(log);
        }
    }
    let (stop_tx, stop) = watch::channel(false);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let shared = Arc::new(Shared {
        url: args.url.trim_end_matches('/').to_owned(),
        key: TokenKey {
            kid: args.token_kid.clone(),
            secret: args.token_secret.clone(),
        },
        http: http.clone(),
        clients: logs.into_iter().map(Mutex::new).collect(),
        sends: Mutex::default(),
        stop,
    });
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..shared.clients.len() {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        queues.push(tx);
        tasks.push(tokio::spawn(client::run(shared.clone(), index, rx)));
    }
    wait_all_connected(&shared).await?;
    eprintln!(
        "rill-load faults: {} clients connected; sending {} msg/s for {} s",
        shared.clients.len(),
        args.rate,
        args.duration
    );

    let start_ms = now_ms();
    send_for(&shared, &queues, &args).await;
    eprintln!("rill-load faults: sends over; settling {} s", args.settle);
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let end_ms = now_ms();
    // The views as they are now, clients still connected.
    let clients: Vec<ClientLog> = (0..shared.clients.len())
        .map(|i| shared.log(i).clone())
        .collect();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let sends: Vec<SendLog> = {
        let mut sends = shared.sends.lock().unwrap_or_else(|e| e.into_inner());
        for send in sends.iter_mut() {
            if send.outcome == Outcome::Pending {
                send.outcome = Outcome::Unknown("no_answer".into());
            }
        }
        sends.clone()
    };
    let history = read_history(&http, &args, &population.profiles).await?;
    let stored = verdict::judge_store(&history, &sends);
    let (verdicts, totals) = verdict::judge(&clients, &sends, end_ms);
    let marks = match &args.marks {
        Some(path) => log::parse_marks(&std::fs::read_to_string(path).unwrap_or_default()),
        None => Vec::new(),
    };
    let timeline = timeline::Timeline::build(start_ms, end_ms, &clients, &sends);
    if let Some(svg) = &args.svg {
        let title = format!(
            "{}: sends, deliveries and clients through the faults",
            args.label
        );
        std::fs::write(svg, timeline::plot(&title, &timeline, &marks, args.users))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    let marks_json: Vec<Value> = marks
        .iter()
        .map(|m| json!({"at_ms": m.at_ms, "at_s": (m.at_ms as f64 - start_ms as f64) / 1000.0, "label": m.label}))
        .collect();
    let report = json!({
        "label": args.label,
        "config": {
            "profiles": args.profiles, "users_per_profile": args.users, "sse_percent": args.sse_percent,
            "rate": args.rate, "duration_secs": args.duration, "settle_secs": args.settle,
            "quitters_per_profile": args.quitters,
        },
        "start_ms": start_ms,
        "end_ms": end_ms,
        "marks": marks_json,
        "totals": totals,
        "stored": stored,
        "clients": verdicts,
        "client_logs": clients,
        "timeline": timeline,
    });
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    summary(&totals, &stored, &verdicts);
    Ok(())
}

/// Waits until every client has opened a session.
async fn wait_all_connected(shared: &Shared) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + ALL_CONNECTED;
    loop {
        let waiting = (0..shared.clients.len())
            .filter(|i| shared.log(*i).sessions.is_empty())
            .count();
        if waiting == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{waiting} clients never connected within {ALL_CONNECTED:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hands sends round robin to the connected clients that have not quit,
/// at `args.rate` for `args.duration`.
async fn send_for(shared: &Shared, queues: &[mpsc::Sender<u64>], args: &FaultArgs) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (args.rate * args.duration) as u64;
    let mut next_client = 0usize;
    for key in 0..total {
        tick.tick().await;
        let clients = shared.clients.len();
        let chosen = (0..clients)
            .map(|i| (next_client + i) % clients)
            .find(|&i| {
                let log = shared.log(i);
                log.connected() && log.quit.is_none()
            });
        next_client = chosen.map_or(next_client, |i| i + 1);
        let Some(index) = chosen else {
            continue; // nobody to send from this tick
        };
        let profile = shared.log(index).profile;
        shared
            .sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SendLog {
                key,
                profile,
                client: index,
                sent_ms: now_ms(),
                answered_ms: None,
                outcome: Outcome::Pending,
            });
        if queues[index].try_send(key).is_err() {
            shared.answer(key, Outcome::Unknown("client_queue_full".into()));
        }
    }
}

/// Each profile's stored history, as message keys, newest first.
async fn read_history(
    http: &reqwest::Client,
    args: &FaultArgs,
    profiles: &[(Uuid, Vec<Uuid>)],
) -> anyhow::Result<HashMap<Uuid, Vec<u64>>> {
    let mut history = HashMap::new();
    for (profile, _) in profiles {
        let mut keys = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut url = format!("{}/api/profiles/{profile}/messages?limit=200", args.api);
            if let Some(before) = &before {
                url.push_str(&format!("&before={before}"));
            }
            let page: Value = http
                .get(&url)
                .header("x-api-key", args.api_key.expose())
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            keys.extend(
                page["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["body"].as_str().and_then(log::key_of)),
            );
            match page["next_before"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => break,
            }
        }
        history.insert(*profile, keys);
    }
    Ok(history)
}

fn summary(
    totals: &verdict::Totals,
    stored: &verdict::Stored,
    verdicts: &[verdict::ClientVerdict],
) {
    eprintln!(
        "rill-load faults: {} sends, {} acknowledged, refused {:?}, unanswered {:?}",
        totals.sends, totals.acked, totals.refused, totals.unknown
    );
    eprintln!(
        "rill-load faults: clients expected {} deliveries, received {}: lost {} silently and {} after a gap, {} duplicated, {} out of order; {} ghosts, {} live users missing from views",
        totals.expected,
        totals.received,
        totals.lost_silently,
        totals.lost_after_gap,
        totals.duplicated,
        totals.out_of_order,
        totals.ghosts,
        totals.missing_presence
    );
    eprintln!(
        "rill-load faults: refused or unanswered yet delivered {}; acknowledged yet delivered to nobody {}",
        totals.delivered_unacked, totals.acked_never_delivered
    );
    eprintln!(
        "rill-load faults: stored {}: acknowledged not stored {}, stored twice {}, stored though not acknowledged {}",
        stored.stored, stored.acked_not_stored, stored.stored_twice, stored.stored_unacked
    );
    let reconnected: usize = verdicts.iter().map(|v| v.resumed_sessions).sum();
    eprintln!("rill-load faults: {reconnected} sessions resumed with a last position");
}
