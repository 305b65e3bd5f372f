//! The command line: `rill-load run ...` (and `rill-load worker`, which the
//! coordinator starts itself).
//!
//! The two secrets (the api key, the token secret) may come from the
//! environment instead, so that they need not be on a command line that
//! `ps` shows; on the command line, the report's copy of it hides them.

use std::ffi::OsString;
use std::path::PathBuf;

use rill_auth::token::MIN_HMAC_SECRET_BYTES;
use rill_runtime::Secret;

/// The api key when `--api-key` is not given.
pub const API_KEY_ENV: &str = "RILL_LOAD_API_KEY";
/// The token secret when `--token-secret` is not given.
pub const TOKEN_SECRET_ENV: &str = "RILL_LOAD_TOKEN_SECRET";

/// The options whose values are secrets: hidden in the report's command.
const SECRET_OPTIONS: [&str; 2] = ["--api-key", "--token-secret"];

pub const USAGE: &str = "\
rill-load: load generator for Rill (WebSocket, SSE) and a Socket.IO peer

USAGE:
    rill-load run [OPTIONS]
    rill-load faults [OPTIONS]   clients through faults: rill-load faults --help
    rill-load hostile [OPTIONS]  clients that break the rules: rill-load hostile --help
    rill-load --help

Target:
    --url URL              where sessions connect: Traefik, or an edge; repeat
                           for several edges (sessions spread round robin)
    --api URL              the api, to create users and profiles (default:
                           the first --url, as through Traefik)
    --transport KIND       ws | sse | mix | socketio (default ws); socketio
                           needs no api: ids are made up
    --sse-percent N        with mix: share of SSE sessions (default 50)

Credentials (not needed with socketio):
    --api-key KEY          the api's key (X-Api-Key) for the setup: creating
                           users and profiles needs one, and an api with
                           test_data on; or env RILL_LOAD_API_KEY
    --token-secret SECRET  the HS256 secret the edges accept connection
                           tokens with (at least 32 bytes): every session's
                           user logs in with a token signed with it; or env
                           RILL_LOAD_TOKEN_SECRET
    --token-kid KID        the secret's key id, put in the tokens' header
                           (default none: the edges try each HS256 key)
    Prefer the environment for the secrets: a command line is visible to
    every user of the machine (the report hides them either way).

Load:
    --profiles P           profiles (default 1)
    --users U              sessions (distinct users) per profile (default 10)
    --rate R               messages per second over the whole run; 0 = idle
                           (default 10)
    --duration S           seconds of sending (or of idling) (default 10)
    --ramp N               new sessions per second (default 2000)
    --body-bytes N         message body size, at least 40 (default 64)
    --drain S              seconds to wait for in-flight deliveries (default 3)
    --settle S             seconds between the last connect and the memory
                           sample / first send (default 2)

Processes and sockets:
    --workers W            worker processes (default: one per 12,000 sessions)
    --source-ips K         bind client sockets to 127.0.0.1 .. 127.0.0.K,
                           round robin (default: one per 10,000 sessions)
    --connect-timeout S    per session, login included (default 30)
    --timeout S            the whole run stops after this (default: the
                           ramp, the probe's and the sending's duration
                           and drain, + 600)

Measurement:
    --edge-pid PID         a server process whose RSS and CPU to sample
                           (repeat); sessions are assumed to be on them
    --cpu-pid NAME=PID     a process whose CPU over the sending phase (sends
                           and drain) the report gives under NAME, in
                           cpu_secs_sending_by_process (repeat)
    --interval-secs N      the latency series' interval: send-to-receive
                           (and the probe's) latency per N seconds of the
                           sending phase, by send time (default 60; at
                           most 1,000 intervals per run)
    --broker HOST:PORT     run the broker probe first, alone: produce and
                           consume at the same rate for the same duration,
                           with the services' Kafka settings
    --probe-topic NAME     (default rill.loadtest.probe)
    --probe-fetch-wait-ms N
                           the probe consumer's fetch.wait.max.ms; give
                           the services' kafka.fetch_wait_max_ms (default 100)
    --label NAME           a name for the run in the report
    --out FILE             the JSON report (default: printed to stdout)
    --svg FILE             the latency plot
    --no-progress          no progress bar
    --testdata-max-users N / --testdata-max-profiles N
                           the api's limits per POST /api/testdata
                           (default 10000 / 1000)
";

#[derive(Debug)]
pub enum Command {
    Help,
    Run(Box<RunArgs>),
    Faults(Box<crate::faults::args::FaultArgs>),
    Hostile(Box<crate::hostile::args::HostileArgs>),
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportMix {
    Ws,
    Sse,
    Mix,
    Socketio,
}

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub urls: Vec<String>,
    pub api: Option<String>,
    /// `--api-key` or `RILL_LOAD_API_KEY`: sent as `X-Api-Key` in the setup.
    pub api_key: Option<Secret>,
    /// `--token-secret` or `RILL_LOAD_TOKEN_SECRET`: signs connection tokens.
    pub token_secret: Option<Secret>,
    /// `--token-kid`: the `kid` of the tokens' header.
    pub token_kid: Option<String>,
    pub transport: TransportMix,
    pub sse_percent: u32,
    pub profiles: u32,
    pub users: u32,
    pub rate: f64,
    pub duration: f64,
    pub ramp: f64,
    pub body_bytes: usize,
    pub drain: f64,
    pub settle: f64,
    pub workers: Option<u32>,
    pub source_ips: Option<u32>,
    pub connect_timeout: f64,
    pub timeout: Option<f64>,
    pub edge_pids: Vec<u32>,
    /// `--cpu-pid NAME=PID`: (NAME, PID).
    pub cpu_pids: Vec<(String, u32)>,
    /// Width of the latency series' intervals, seconds.
    pub interval_secs: f64,
    pub broker: Option<String>,
    pub probe_topic: String,
    pub probe_fetch_wait_ms: u32,
    pub label: String,
    pub out: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub progress: bool,
    pub testdata_max_users: u32,
    pub testdata_max_profiles: u32,
    /// The command line as given, secrets hidden, for the report.
    pub command: Vec<String>,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            api: None,
            api_key: None,
            token_secret: None,
            token_kid: None,
            transport: TransportMix::Ws,
            sse_percent: 50,
            profiles: 1,
            users: 10,
            rate: 10.0,
            duration: 10.0,
            ramp: 2000.0,
            body_bytes: 64,
            drain: 3.0,
            settle: 2.0,
            workers: None,
            source_ips: None,
            connect_timeout: 30.0,
            timeout: None,
            edge_pids: Vec::new(),
            cpu_pids: Vec::new(),
            interval_secs: 60.0,
            broker: None,
            probe_topic: "rill.loadtest.probe".into(),
            probe_fetch_wait_ms: 100,
            label: "run".into(),
            out: None,
            svg: None,
            progress: true,
            testdata_max_users: 10_000,
            testdata_max_profiles: 1_000,
            command: Vec::new(),
        }
    }
}

impl RunArgs {
    pub fn sessions(&self) -> u64 {
        u64::from(self.profiles) * u64::from(self.users)
    }

    /// `--timeout`, or long enough for every phase plus 10 minutes to
    /// spare: the ramp, the settle, the broker probe (its own duration,
    /// drain and start) and the sending with its drain.
    pub fn timeout_secs(&self) -> f64 {
        self.timeout.unwrap_or_else(|| {
            let probe = match self.broker {
                Some(_) => self.duration + self.drain + 15.0,
                None => 0.0,
            };
            self.sessions() as f64 / self.ramp
                + self.settle
                + probe
                + self.duration
                + self.drain
                + 600.0
        })
    }
}

/// Parses `args` (without the program's name), the secrets not given
/// there taken from the process's environment.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    parse_with_env(args, |name| std::env::var(name).ok())
}

/// [`parse`], with `env` for the environment (tests pass their own).
pub fn parse_with_env(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let args: Vec<OsString> = args.into_iter().collect();
    let command_line = std::iter::once("rill-load".to_owned())
        .chain(redacted(&args))
        .collect();
    let mut parser = lexopt::Parser::from_args(args);
    let mut run = RunArgs {
        command: command_line,
        ..RunArgs::default()
    };
    let mut subcommand = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(v) if subcommand.is_none() => {
                let v = v.string()?;
                match v.as_str() {
                    "run" => subcommand = Some(v),
                    "worker" => return Ok(Command::Worker),
                    "faults" => {
                        let args = crate::faults::args::parse(&mut parser, &env)?;
                        return Ok(Command::Faults(Box::new(args)));
                    }
                    "hostile" => {
                        let args = crate::hostile::args::parse(&mut parser, &env)?;
                        return Ok(Command::Hostile(Box::new(args)));
                    }
                    _ => return Err(format!("unknown command {v:?}").into()),
                }
            }
            Long("url") => run.urls.push(parser.value()?.string()?),
            Long("api") => run.api = Some(parser.value()?.string()?),
            Long("api-key") => run.api_key = Some(secret("--api-key", parser.value()?)?),
            Long("token-secret") => {
                run.token_secret = Some(secret("--token-secret", parser.value()?)?)
            }
            Long("token-kid") => run.token_kid = Some(parser.value()?.string()?),
            Long("transport") => {
                run.transport = match parser.value()?.string()?.as_str() {
                    "ws" => TransportMix::Ws,
                    "sse" => TransportMix::Sse,
                    "mix" => TransportMix::Mix,
                    "socketio" => TransportMix::Socketio,
                    other => return Err(format!("--transport: unknown {other:?}").into()),
                }
            }
            Long("sse-percent") => run.sse_percent = parser.value()?.parse()?,
            Long("profiles") => run.profiles = parser.value()?.parse()?,
            Long("users") => run.users = parser.value()?.parse()?,
            Long("rate") => run.rate = parser.value()?.parse()?,
            Long("duration") => run.duration = parser.value()?.parse()?,
            Long("ramp") => run.ramp = parser.value()?.parse()?,
            Long("body-bytes") => run.body_bytes = parser.value()?.parse()?,
            Long("drain") => run.drain = parser.value()?.parse()?,
            Long("settle") => run.settle = parser.value()?.parse()?,
            Long("workers") => run.workers = Some(parser.value()?.parse()?),
            Long("source-ips") => run.source_ips = Some(parser.value()?.parse()?),
            Long("connect-timeout") => run.connect_timeout = parser.value()?.parse()?,
            Long("timeout") => run.timeout = Some(parser.value()?.parse()?),
            Long("edge-pid") => run.edge_pids.push(parser.value()?.parse()?),
            Long("cpu-pid") => {
                let value = parser.value()?.string()?;
                let parsed = value
                    .split_once('=')
                    .and_then(|(name, pid)| Some((name.to_owned(), pid.parse().ok()?)))
                    .filter(|(name, _)| !name.is_empty());
                match parsed {
                    Some(named) => run.cpu_pids.push(named),
                    None => return Err(format!("--cpu-pid: {value:?} is not NAME=PID").into()),
                }
            }
            Long("interval-secs") => run.interval_secs = parser.value()?.parse()?,
            Long("broker") => run.broker = Some(parser.value()?.string()?),
            Long("probe-topic") => run.probe_topic = parser.value()?.string()?,
            Long("probe-fetch-wait-ms") => run.probe_fetch_wait_ms = parser.value()?.parse()?,
            Long("label") => run.label = parser.value()?.string()?,
            Long("out") => run.out = Some(parser.value()?.into()),
            Long("svg") => run.svg = Some(parser.value()?.into()),
            Long("no-progress") => run.progress = false,
            Long("testdata-max-users") => run.testdata_max_users = parser.value()?.parse()?,
            Long("testdata-max-profiles") => run.testdata_max_profiles = parser.value()?.parse()?,
            _ => return Err(arg.unexpected()),
        }
    }
    if subcommand.is_none() {
        return Err("a command is needed: run".into());
    }
    // The flag wins over the environment; an empty variable is no value.
    let from_env = |name| env(name).filter(|v| !v.is_empty()).map(Secret::new);
    run.api_key = run.api_key.or_else(|| from_env(API_KEY_ENV));
    run.token_secret = run.token_secret.or_else(|| from_env(TOKEN_SECRET_ENV));
    validate(&run)?;
    Ok(Command::Run(Box::new(run)))
}

/// A secret option's value: text, not empty.
fn secret(option: &str, value: OsString) -> Result<Secret, lexopt::Error> {
    match value.into_string() {
        Ok(text) if !text.is_empty() => Ok(Secret::new(text)),
        _ => Err(format!("{option}: an empty or non-UTF-8 value").into()),
    }
}

/// `args` as text, the values of the secret options replaced (both
/// `--api-key KEY` and `--api-key=KEY`).
fn redacted(args: &[OsString]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        let arg = arg.to_string_lossy();
        if std::mem::take(&mut hide_next) {
            out.push("[redacted]".to_owned());
            continue;
        }
        let name = arg.split_once('=').map_or(&*arg, |(name, _)| name);
        match SECRET_OPTIONS.contains(&name) {
            true if name.len() < arg.len() => out.push(format!("{name}=[redacted]")),
            true => {
                hide_next = true;
                out.push(arg.into_owned());
            }
            false => out.push(arg.into_owned()),
        }
    }
    out
}

fn validate(run: &RunArgs) -> Result<(), lexopt::Error> {
    let fail = |m: &str| Err(lexopt::Error::from(m));
    if run.urls.is_empty() {
        return fail("--url is needed");
    }
    if run.profiles == 0 || run.users == 0 {
        return fail("--profiles and --users must be at least 1");
    }
    if run.sse_percent > 100 {
        return fail("--sse-percent must be 0..=100");
    }
    if !(run.rate >= 0.0 && run.duration >= 0.0 && run.ramp > 0.0 && run.drain >= 0.0) {
        return fail("--rate, --duration and --drain must be >= 0, --ramp > 0");
    }
    if run.body_bytes < 40 {
        return fail("--body-bytes must be at least 40 (the timestamp and id)");
    }
    if run.interval_secs.is_nan() || run.interval_secs <= 0.0 {
        return fail("--interval-secs must be > 0");
    }
    if run.duration / run.interval_secs > crate::intervals::MAX_INTERVALS as f64 {
        return fail("--duration / --interval-secs must be at most 1,000 intervals");
    }
    if run.workers == Some(0) || run.source_ips == Some(0) || run.source_ips > Some(254) {
        return fail("--workers must be >= 1 and --source-ips 1..=254");
    }
    if run.token_kid.as_deref() == Some("") {
        return fail("--token-kid must not be empty (leave it out for none)");
    }
    if let Some(secret) = &run.token_secret
        && secret.expose().len() < MIN_HMAC_SECRET_BYTES
    {
        return fail(&format!(
            "--token-secret must be at least {MIN_HMAC_SECRET_BYTES} bytes, \
             as the edges' HS256 keys are"
        ));
    }
    // The Socket.IO peer has no api and no logins: made-up ids, no cookie.
    if run.transport != TransportMix::Socketio {
        if run.api_key.is_none() {
            return fail(&format!(
                "--api-key (or {API_KEY_ENV}) is needed: the setup creates users and \
                 profiles through the api"
            ));
        }
        if run.token_secret.is_none() {
            return fail(&format!(
                "--token-secret (or {TOKEN_SECRET_ENV}) is needed: every session's user \
                 logs in with a connection token"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-token-secret-of-at-least-32-bytes";

    /// `line` parsed with both secrets in the environment.
    fn parse_str(line: &str) -> Result<Command, lexopt::Error> {
        parse_env(
            line,
            &[(API_KEY_ENV, "env-key"), (TOKEN_SECRET_ENV, SECRET)],
        )
    }

    /// `line` parsed with `env` for the environment.
    fn parse_env(line: &str, env: &[(&str, &str)]) -> Result<Command, lexopt::Error> {
        parse_with_env(line.split_whitespace().map(OsString::from), |name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn run_of(command: Result<Command, lexopt::Error>) -> Box<RunArgs> {
        match command {
            Ok(Command::Run(run)) => run,
            other => panic!("a run: {other:?}"),
        }
    }

    #[test]
    fn the_credentials_come_from_the_flags() {
        let run = run_of(parse_env(
            &format!("run --url x --api-key k1 --token-secret {SECRET} --token-kid load"),
            &[],
        ));
        assert_eq!(run.api_key.as_ref().map(Secret::expose), Some("k1"));
        assert_eq!(run.token_secret.as_ref().map(Secret::expose), Some(SECRET));
        assert_eq!(run.token_kid.as_deref(), Some("load"));
        let run = run_of(parse_env(
            &format!("run --url x --api-key=k2 --token-secret={SECRET}"),
            &[],
        ));
        assert_eq!(run.api_key.as_ref().map(Secret::expose), Some("k2"));
        assert_eq!(run.token_kid, None, "no kid by default");
    }

    #[test]
    fn the_credentials_come_from_the_environment_unless_flagged() {
        let other = "another-token-secret-of-32-bytes-or-more";
        let env = [(API_KEY_ENV, "env-key"), (TOKEN_SECRET_ENV, other)];
        let run = run_of(parse_env("run --url x", &env));
        assert_eq!(run.api_key.as_ref().map(Secret::expose), Some("env-key"));
        assert_eq!(run.token_secret.as_ref().map(Secret::expose), Some(other));
        let run = run_of(parse_env(
            &format!("run --url x --api-key flag-key --token-secret {SECRET}"),
            &env,
        ));
        assert_eq!(
            run.api_key.as_ref().map(Secret::expose),
            Some("flag-key"),
            "the flag wins"
        );
        assert_eq!(run.token_secret.as_ref().map(Secret::expose), Some(SECRET));
    }

    #[test]
    fn rill_runs_need_both_credentials_and_the_peer_neither() {
        let secret = format!("--token-secret {SECRET}");
        let err = parse_env(&format!("run --url x {secret}"), &[]).expect_err("no key");
        assert!(err.to_string().contains("--api-key"), "{err}");
        let err = parse_env("run --url x --api-key k", &[]).expect_err("no secret");
        assert!(err.to_string().contains("--token-secret"), "{err}");
        let err = parse_env(
            "run --url x --transport sse --api-key k",
            &[(API_KEY_ENV, "")],
        )
        .expect_err("an empty variable is none");
        assert!(err.to_string().contains(TOKEN_SECRET_ENV), "{err}");
        let run = run_of(parse_env("run --url x --transport socketio", &[]));
        assert!(run.api_key.is_none() && run.token_secret.is_none());
    }

    #[test]
    fn bad_credentials_are_refused() {
        let err = parse_str("run --url x --token-secret short").expect_err("31 bytes at most");
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        for missing in ["--api-key", "--token-secret", "--token-kid"] {
            assert!(
                parse_str(&format!("run --url x {missing}")).is_err(),
                "{missing} without a value"
            );
        }
        assert!(parse_str("run --url x --api-key=").is_err(), "empty");
        assert!(parse_str("run --url x --token-kid=").is_err(), "empty");
    }

    #[test]
    fn the_reported_command_hides_the_secrets_and_debug_too() {
        let run = run_of(parse_env(
            &format!("run --url x --api-key sekrit --token-secret={SECRET} --label l"),
            &[],
        ));
        let command = run.command.join(" ");
        assert_eq!(
            command,
            "rill-load run --url x --api-key [redacted] --token-secret=[redacted] --label l"
        );
        let debug = format!("{run:?}");
        assert!(
            !debug.contains("sekrit") && !debug.contains(SECRET),
            "{debug}"
        );
    }

    #[test]
    fn a_full_command_line_parses() {
        let Ok(Command::Run(run)) = parse_str(
            "run --url http://127.0.0.1:1 --url http://127.0.0.1:2 --transport mix \
             --profiles 3 --users 4 --rate 2.5 --edge-pid 7 --edge-pid 8 --no-progress \
             --cpu-pid kafka=9 --cpu-pid edge-1=7 --interval-secs 5",
        ) else {
            panic!("parses")
        };
        assert_eq!(run.urls.len(), 2);
        assert_eq!(run.transport, TransportMix::Mix);
        assert_eq!(run.sessions(), 12);
        assert_eq!(run.rate, 2.5);
        assert_eq!(run.edge_pids, vec![7, 8]);
        assert!(!run.progress);
        assert_eq!(
            run.cpu_pids,
            vec![("kafka".to_owned(), 9), ("edge-1".to_owned(), 7)]
        );
        assert_eq!(run.interval_secs, 5.0);
        assert_eq!(run.command[0], "rill-load");
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert!(parse_str("run").is_err(), "no url");
        assert!(parse_str("run --url x --transport carrier-pigeon").is_err());
        assert!(parse_str("run --url x --users 0").is_err());
        assert!(parse_str("run --url x --bogus").is_err());
        assert!(matches!(parse_str("worker"), Ok(Command::Worker)));
        assert!(parse_str("run --url x --cpu-pid kafka").is_err());
        assert!(parse_str("run --url x --cpu-pid =3").is_err());
        assert!(parse_str("run --url x --interval-secs 0").is_err());
        assert!(
            parse_str("run --url x --duration 600 --interval-secs 0.5").is_err(),
            "1,200 intervals"
        );
    }

    #[test]
    fn the_intervals_default_to_a_minute() {
        let Ok(Command::Run(run)) = parse_str("run --url x") else {
            panic!("parses")
        };
        assert_eq!(run.interval_secs, 60.0);
    }

    #[test]
    fn a_ten_minute_run_with_the_probe_has_time_for_both() {
        let Ok(Command::Run(run)) = parse_str(
            "run --url x --profiles 1000 --users 10 --duration 600 --drain 3 --broker k:1",
        ) else {
            panic!("parses")
        };
        // The probe's 600 s, then the sessions' 600 s, then the spare.
        assert!(
            run.timeout_secs() > 1200.0 + 600.0,
            "{}",
            run.timeout_secs()
        );
        let Ok(Command::Run(run)) = parse_str("run --url x --timeout 60") else {
            panic!("parses")
        };
        assert_eq!(run.timeout_secs(), 60.0);
    }
}
