//! `rill-load hostile`: clients that break the rules beside honest
//! traffic, and what the edges answered each of them.
//!
//! The kinds, each from a source address of its own, on one profile of
//! their own (made through the api, [`crate::setup`]):
//! - [`noisy`]: send floods (sessions sending as fast as the socket takes)
//!   and connect/close loops;
//! - [`stalls`]: slow readers resuming from a made-up or long-past
//!   position and then reading nothing, WebSocket messages begun and never
//!   finished (parked fragments), and request headers trickled a byte at a
//!   time (slowloris).
//!
//! Each kind keeps a [`Tally`] of the answers (refusals by code, closes by
//! code and reason, how long the edge took to cut); the edges' own
//! counters are read before and after ([`edge_counters`]); a [`Verdict`]
//! per kind says whether the limit held. [`raw`] is the hand-written
//! WebSocket client the rule breakers need; [`args`] the options.

pub mod args;
pub mod noisy;
pub mod raw;
pub mod stalls;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

use self::args::HostileArgs;
use crate::login::TokenKey;

/// How long a session's `ready` may take.
const FIRST_EVENT: Duration = Duration::from_secs(10);
/// A connection token's lifetime: signed anew for each connect.
const TOKEN_SECS: u64 = 3600;
/// The edges' counters whose change over the run the report gives.
const EDGE_COUNTERS: [&str; 8] = [
    "rill_edge_sends_refused_total",
    "rill_edge_sessions_refused_total",
    "rill_edge_sessions_ended_total",
    "rill_edge_connections_expired_total",
    "rill_edge_connections_refused_total",
    "rill_edge_dropped_events_total",
    "rill_edge_replayed_messages_total",
    "rill_edge_sends_accepted_total",
];

/// What every hostile client is pointed at.
#[derive(Debug)]
pub struct Target {
    pub urls: Vec<String>,
    pub profile: Uuid,
    pub key: TokenKey,
    /// No new attempt starts after this.
    pub deadline: Instant,
    source_base: u8,
}

/// The hostile kinds, in the order of their source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flood = 1,
    Churn = 2,
    Reader = 3,
    Parked = 4,
    Slowloris = 5,
}

impl Target {
    /// The edge of a kind's `n`th client (round robin).
    pub fn url(&self, n: usize) -> &str {
        &self.urls[n % self.urls.len()]
    }

    /// `kind`'s source address: one per kind, apart from the honest ones.
    pub fn source(&self, kind: Kind) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, self.source_base + kind as u8)
    }

    /// The WebSocket path of `user`'s session, with a token in the query.
    pub fn ws_path(&self, user: Uuid, last_position: Option<&str>) -> String {
        let now = crate::stats::now_us() / 1_000_000;
        let token = self.key.sign(user, now, TOKEN_SECS);
        let mut path = format!("/live/{}/ws?token={token}", self.profile);
        if let Some(position) = last_position {
            path.push_str(&format!("&last_position={position}"));
        }
        path
    }

    pub fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// A WebSocket of `kind` to `url` at `path` (the upgrade done by hand),
/// or the refusal's name.
pub async fn open(
    target: &Target,
    kind: Kind,
    url: &str,
    path: &str,
    recv_buffer: Option<u32>,
) -> Result<(TcpStream, raw::FrameReader), String> {
    let mut stream = raw::connect(url, target.source(kind), recv_buffer).await?;
    let rest = raw::upgrade(&mut stream, url, path).await?;
    Ok((stream, raw::FrameReader::new(rest)))
}

/// [`open`] and [`first_event`]; on a failure its name is counted in
/// `tally`, and after a pause of `retry` `None` says to try again.
pub async fn open_ready(
    target: &Target,
    kind: Kind,
    url: &str,
    path: &str,
    recv_buffer: Option<u32>,
    tally: &Tally,
    retry: Duration,
) -> Option<(TcpStream, raw::FrameReader)> {
    let opened = async {
        let (mut stream, mut frames) = open(target, kind, url, path, recv_buffer).await?;
        first_event(&mut stream, &mut frames).await?;
        Ok::<_, String>((stream, frames))
    };
    match opened.await {
        Ok(open) => Some(open),
        Err(why) => {
            tally.one(why);
            tokio::time::sleep(retry).await;
            None
        }
    }
}

/// Reads up to the session's first event, which should be `ready`;
/// otherwise what came instead, as a name (`closed_1008`, `eof`, ...).
pub async fn first_event(
    stream: &mut TcpStream,
    frames: &mut raw::FrameReader,
) -> Result<Value, String> {
    let read = tokio::time::timeout(FIRST_EVENT, async {
        loop {
            match frames.next(stream).await {
                Ok(Some(frame)) => {
                    if let Some(event) = frame.event() {
                        return Ok(event);
                    }
                    if let Some((code, _)) = frame.close() {
                        return Err(format!("closed_{}", code.unwrap_or(0)));
                    }
                }
                Ok(None) => return Err("eof_before_ready".to_owned()),
                Err(e) => return Err(format!("read_{:?}", e.kind())),
            }
        }
    });
    match read.await {
        Ok(Ok(event)) if event["type"] == "ready" => Ok(event),
        Ok(Ok(event)) => Err(format!(
            "first_event_{}",
            event["type"].as_str().unwrap_or("?")
        )),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("no_ready".to_owned()),
    }
}

/// An event's name to count: `ack`, `error_rate_limited`, `gap_too_many`,
/// `message`, ...
pub fn event_name(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("?");
    match kind {
        "error" => format!("error_{}", event["code"].as_str().unwrap_or("?")),
        "gap" => format!("gap_{}", event["reason"].as_str().unwrap_or("?")),
        _ => kind.to_owned(),
    }
}

/// What one kind's clients met: answers by name, and how long the edge
/// took to cut those it cut.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
    cut_secs: Mutex<Vec<f64>>,
}

impl Tally {
    pub fn add(&self, what: impl Into<String>, n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what.into())
            .or_default() += n;
    }

    pub fn one(&self, what: impl Into<String>) {
        self.add(what, 1);
    }

    /// A client cut `secs` after it broke the rule.
    pub fn cut_after(&self, secs: f64) {
        self.cut_secs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(secs);
    }

    pub fn count(&self, what: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(what)
            .copied()
            .unwrap_or(0)
    }

    /// The sum of the counts whose names start with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    fn to_json(&self) -> Value {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut cuts = self
            .cut_secs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        cuts.sort_by(f64::total_cmp);
        let at = |q: f64| cuts.get(((cuts.len() - 1) as f64 * q).round() as usize);
        let cut = (!cuts.is_empty()).then(|| {
            json!({"count": cuts.len(), "min_secs": cuts[0], "p50_secs": at(0.5),
                   "max_secs": cuts[cuts.len() - 1]})
        });
        json!({"counts": counts, "cut": cut})
    }
}

/// Whether a kind's limit held, and what was looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub kind: &'static str,
    pub expected: &'static str,
    pub held: bool,
    pub seen: String,
}

/// The tallies of a run, one per kind.
#[derive(Debug, Default)]
pub struct Tallies {
    pub flood: Tally,
    pub churn: Tally,
    pub reader: Tally,
    pub parked: Tally,
    pub slowloris: Tally,
}

pub async fn run(args: HostileArgs) -> anyhow::Result<()> {
    let population = crate::setup::populate(
        &args.api,
        &args.api_key,
        1,
        args.users().max(1),
        10_000,
        1_000,
    )
    .await
    .context("setting up the hostile users and their profile")?;
    let (profile, users) = population
        .profiles
        .into_iter()
        .next()
        .context("the api made no profile")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let urls: Vec<String> = args
        .urls
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    let before = edge_counters(&http, &urls).await;
    let started = Instant::now();
    let target = std::sync::Arc::new(Target {
        urls: urls.clone(),
        profile,
        key: TokenKey {
            kid: args.token_kid.clone(),
            secret: args.token_secret.clone(),
        },
        deadline: started + Duration::from_secs_f64(args.duration),
        source_base: args.source_base,
    });
    let tallies = std::sync::Arc::new(Tallies::default());
    eprintln!(
        "rill-load hostile: {} floods, {} connect/close loops, {} slow readers, {} parked \
         fragments, {} slowloris for {} s against {} edges",
        args.floods,
        args.churn,
        args.readers,
        args.parked,
        args.slowloris,
        args.duration,
        urls.len()
    );
    let mut users = users.into_iter();
    let mut take = |n: u32| users.by_ref().take(n as usize).collect::<Vec<Uuid>>();
    let mut tasks = Vec::new();
    // The floods on a thread of their own: a flood without a rate never
    // waits for its socket, and would starve the deadlines of the kinds
    // that measure time.
    let flood_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flood")
        .enable_all()
        .build()?;
    for (i, user) in take(args.floods).into_iter().enumerate() {
        let (t, y) = (target.clone(), tallies.clone());
        let plan = noisy::FloodPlan {
            rate: args.flood_rate,
            body_bytes: args.flood_body_bytes,
        };
        tasks.push(
            flood_runtime.spawn(async move { noisy::flood(&t, &y.flood, i, user, plan).await }),
        );
    }
    for (i, user) in take(args.churn).into_iter().enumerate() {
        let (t, y, rate) = (target.clone(), tallies.clone(), args.churn_rate);
        tasks.push(tokio::spawn(async move {
            noisy::churn(&t, &y.churn, i, user, rate).await
        }));
    }
    for (i, user) in take(args.readers).into_iter().enumerate() {
        let (t, y, hold) = (target.clone(), tallies.clone(), args.reader_hold);
        tasks.push(tokio::spawn(async move {
            stalls::slow_reader(&t, &y.reader, i, user, hold).await
        }));
    }
    for (i, user) in take(args.parked).into_iter().enumerate() {
        let (t, y, wait) = (target.clone(), tallies.clone(), args.parked_wait);
        tasks.push(tokio::spawn(async move {
            stalls::parked(&t, &y.parked, i, user, wait).await
        }));
    }
    for i in 0..args.slowloris as usize {
        let (t, y) = (target.clone(), tallies.clone());
        let (trickle, wait) = (args.trickle_secs, args.slowloris_wait);
        tasks.push(tokio::spawn(async move {
            stalls::slowloris(&t, &y.slowloris, i, trickle, wait).await
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    flood_runtime.shutdown_background();
    let elapsed = started.elapsed().as_secs_f64();
    let after = edge_counters(&http, &urls).await;
    let verdicts = verdicts(&args, &tallies);
    let report = json!({
        "label": args.label,
        "commit": crate::report::commit(),
        "config": {
            "urls": urls, "duration_secs": args.duration, "floods": args.floods,
            "flood_rate": args.flood_rate, "flood_body_bytes": args.flood_body_bytes, "churn": args.churn, "churn_rate": args.churn_rate,
            "readers": args.readers, "reader_hold_secs": args.reader_hold,
            "parked": args.parked, "parked_wait_secs": args.parked_wait,
            "slowloris": args.slowloris, "trickle_secs": args.trickle_secs,
            "slowloris_wait_secs": args.slowloris_wait, "source_base": args.source_base,
        },
        "profile": profile,
        "elapsed_secs": elapsed,
        "kinds": {
            "flood": tallies.flood.to_json(),
            "churn": tallies.churn.to_json(),
            "slow_reader": tallies.reader.to_json(),
            "parked_fragment": tallies.parked.to_json(),
            "slowloris": tallies.slowloris.to_json(),
        },
        "edge_counters_delta": delta(&before, &after),
        "verdicts": verdicts,
        "all_held": verdicts.iter().all(|v| v.held),
    });
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    for v in &verdicts {
        eprintln!(
            "rill-load hostile: {:<16} {} (expected: {}; seen: {})",
            v.kind,
            if v.held { "held" } else { "NOT HELD" },
            v.expected,
            v.seen
        );
    }
    Ok(())
}

/// Each kind that ran, judged by what its clients met.
pub fn verdicts(args: &HostileArgs, t: &Tallies) -> Vec<Verdict> {
    let mut out = Vec::new();
    if args.floods > 0 {
        let (limited, ended) = (
            t.flood.count("error_rate_limited"),
            t.flood.count_prefix("ended_by_edge"),
        );
        out.push(Verdict {
            kind: "flood",
            expected: "error rate_limited, the session goes on",
            held: limited > 0 && ended == 0 && t.flood.count("opened") > 0,
            seen: format!(
                "{} sent, {} acked, {limited} rate_limited, {ended} sessions ended by the edge",
                t.flood.count("sent"),
                t.flood.count("ack")
            ),
        });
    }
    if args.churn > 0 {
        let refused = t.churn.count_prefix("http_429");
        out.push(Verdict {
            kind: "churn",
            expected: "429 past the open limits (per user, per address)",
            held: refused > 0,
            seen: format!(
                "{} opened, {} refused with 429 ({} rate_limited), {} other",
                t.churn.count("opened"),
                refused,
                t.churn.count("http_429_rate_limited"),
                t.churn.count_prefix("http_") - refused
            ),
        });
    }
    if args.readers > 0 {
        let (gaps, cut, not_cut) = (
            t.reader.count_prefix("gap_"),
            t.reader.count("cut"),
            t.reader.count("not_cut"),
        );
        out.push(Verdict {
            kind: "slow_reader",
            expected: "a gap, then cut as too slow",
            held: gaps > 0 && cut > 0 && not_cut == 0,
            seen: format!("{gaps} gaps, {cut} cut, {not_cut} not cut within the hold"),
        });
    }
    for (kind, tally, n, expected) in [
        (
            "parked_fragment",
            &t.parked,
            args.parked,
            "closed (1008) once the fragment or heartbeat deadline passed",
        ),
        (
            "slowloris",
            &t.slowloris,
            args.slowloris,
            "closed once the header deadline passed",
        ),
    ] {
        if n == 0 {
            continue;
        }
        let (closed, not_closed) = (tally.count_prefix("closed"), tally.count("not_closed"));
        out.push(Verdict {
            kind,
            expected,
            held: closed > 0 && not_closed == 0,
            seen: format!("{closed} closed by the edge, {not_closed} still open after the wait"),
        });
    }
    out
}

/// The counters of [`EDGE_COUNTERS`] summed over `urls`' `/metrics`, by
/// series (name and labels); an edge that does not answer adds nothing.
async fn edge_counters(http: &reqwest::Client, urls: &[String]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for url in urls {
        let Ok(response) = http.get(format!("{url}/metrics")).send().await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        for (series, value) in parse_counters(&text) {
            *out.entry(series).or_default() += value;
        }
    }
    out
}

/// `(series, value)` of the Prometheus text's lines of [`EDGE_COUNTERS`].
fn parse_counters(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| EDGE_COUNTERS.iter().any(|c| l.starts_with(c)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edges_counters_are_read_and_subtracted() {
        let before = "# HELP x\nrill_edge_sends_refused_total{reason=\"rate_limited\"} 3\n\
                      rill_edge_live_sessions 9\n";
        let after = "rill_edge_sends_refused_total{reason=\"rate_limited\"} 10\n\
                     rill_edge_sessions_ended_total{reason=\"too_slow\"} 2\n";
        let parse = |t: &str| parse_counters(t).into_iter().collect::<BTreeMap<_, _>>();
        let d = delta(&parse(before), &parse(after));
        assert_eq!(
            d.get("rill_edge_sends_refused_total{reason=\"rate_limited\"}"),
            Some(&7.0)
        );
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn a_tally_counts_and_sums_the_cuts() {
        let tally = Tally::default();
        tally.one("http_429_rate_limited");
        tally.add("http_429_too_many_sessions", 2);
        tally.one("opened");
        for secs in [3.0, 1.0, 2.0] {
            tally.cut_after(secs);
        }
        assert_eq!(tally.count_prefix("http_429"), 3);
        let json = tally.to_json();
        assert_eq!(json["cut"]["min_secs"], 1.0);
        assert_eq!(json["cut"]["p50_secs"], 2.0);
        assert_eq!(json["counts"]["opened"], 1);
    }
}
