//! `rill-load hostile [OPTIONS]`: its command line.

use std::path::PathBuf;

use rill_runtime::Secret;

use crate::cli::{API_KEY_ENV, TOKEN_SECRET_ENV};

pub const USAGE: &str = "\
rill-load hostile: clients that break the rules, and what the edges answered

USAGE:
    rill-load hostile --url URL [--url URL ...] --api URL [OPTIONS]

Hostile clients of one profile of their own, spread round robin over the
--url edges (addressed directly), for --duration seconds; each kind from a
source address of its own (127.0.0.B+1 .. B+5, B = --source-base), so that
the per-address limits they meet are theirs. Run it beside `rill-load run`
for honest traffic. Every kind counts what the edges answered; the edges'
own counters (/metrics) are read before and after.

    --url URL              an edge (repeat)
    --api URL              the api: the hostile users and their profile
    --api-key KEY          or env RILL_LOAD_API_KEY
    --token-secret SECRET  or env RILL_LOAD_TOKEN_SECRET
    --token-kid KID        the secret's key id
    --duration S           seconds of hostility (default 60); a client
                           cut or refused before the end starts again
    --floods N             sessions sending as fast as the socket takes
                           (default 4): expect `rate_limited`, session goes on
    --flood-rate R         sends per second per flood session; 0 = as fast
                           as the socket takes (default 0)
    --flood-body-bytes N   each send's body: quotes and backslashes, the
                           most a body grows when JSON-escaped (default
                           4096, the edges' limits.max_message_bytes)
    --churn N              connect/close loops, one user each (default 4):
                           expect 429 (opens per user, per address)
    --churn-rate R         attempts per second per loop (default 50)
    --readers N            slow readers (default 4): resume from a made-up
                           or a long-past position, read the first events,
                           then read nothing: expect a `gap`, then the cut
    --reader-hold S        longest a slow reader waits to be cut (default 40)
    --parked N             connections that start a WebSocket message and
                           never finish it (default 8): expect a 1008 close
    --parked-wait S        longest a parked one waits (default 60)
    --slowloris N          connections trickling request headers, a byte
                           per --trickle-secs (default 50): expect the
                           edge to close them
    --trickle-secs S       (default 1)
    --slowloris-wait S     longest a slowloris connection waits (default 40)
    --source-base B        source addresses 127.0.0.(B+1..B+5) (default 200)
    --label NAME           a name for the run (default hostile)
    --out FILE             the JSON report (default stdout)
";

#[derive(Debug, Clone)]
pub struct HostileArgs {
    pub urls: Vec<String>,
    pub api: String,
    pub api_key: Secret,
    pub token_secret: Secret,
    pub token_kid: Option<String>,
    pub duration: f64,
    pub floods: u32,
    pub flood_rate: f64,
    pub flood_body_bytes: usize,
    pub churn: u32,
    pub churn_rate: f64,
    pub readers: u32,
    pub reader_hold: f64,
    pub parked: u32,
    pub parked_wait: f64,
    pub slowloris: u32,
    pub trickle_secs: f64,
    pub slowloris_wait: f64,
    pub source_base: u8,
    pub label: String,
    pub out: Option<PathBuf>,
}

impl HostileArgs {
    /// Users the kinds need (each session or loop a user of its own).
    pub fn users(&self) -> u32 {
        self.floods + self.churn + self.readers + self.parked
    }
}

/// Parses the options after `hostile`; secrets not given come from `env`.
pub fn parse(
    parser: &mut lexopt::Parser,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HostileArgs, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut api, mut api_key, mut token_secret) = (None, None, None);
    let mut args = HostileArgs {
        urls: Vec::new(),
        api: String::new(),
        api_key: Secret::new(""),
        token_secret: Secret::new(""),
        token_kid: None,
        duration: 60.0,
        floods: 4,
        flood_rate: 0.0,
        flood_body_bytes: 4096,
        churn: 4,
        churn_rate: 50.0,
        readers: 4,
        reader_hold: 40.0,
        parked: 8,
        parked_wait: 60.0,
        slowloris: 50,
        trickle_secs: 1.0,
        slowloris_wait: 40.0,
        source_base: 200,
        label: "hostile".into(),
        out: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Err(USAGE.into()),
            Long("url") => args.urls.push(parser.value()?.string()?),
            Long("api") => api = Some(parser.value()?.string()?),
            Long("api-key") => api_key = Some(parser.value()?.string()?),
            Long("token-secret") => token_secret = Some(parser.value()?.string()?),
            Long("token-kid") => args.token_kid = Some(parser.value()?.string()?),
            Long("duration") => args.duration = parser.value()?.parse()?,
            Long("floods") => args.floods = parser.value()?.parse()?,
            Long("flood-rate") => args.flood_rate = parser.value()?.parse()?,
            Long("flood-body-bytes") => args.flood_body_bytes = parser.value()?.parse()?,
            Long("churn") => args.churn = parser.value()?.parse()?,
            Long("churn-rate") => args.churn_rate = parser.value()?.parse()?,
            Long("readers") => args.readers = parser.value()?.parse()?,
            Long("reader-hold") => args.reader_hold = parser.value()?.parse()?,
            Long("parked") => args.parked = parser.value()?.parse()?,
            Long("parked-wait") => args.parked_wait = parser.value()?.parse()?,
            Long("slowloris") => args.slowloris = parser.value()?.parse()?,
            Long("trickle-secs") => args.trickle_secs = parser.value()?.parse()?,
            Long("slowloris-wait") => args.slowloris_wait = parser.value()?.parse()?,
            Long("source-base") => args.source_base = parser.value()?.parse()?,
            Long("label") => args.label = parser.value()?.string()?,
            Long("out") => args.out = Some(parser.value()?.into()),
            _ => return Err(arg.unexpected()),
        }
    }
    let from_env = |name| env(name).filter(|v: &String| !v.is_empty());
    if args.urls.is_empty() {
        return Err("hostile: --url is needed".into());
    }
    args.api = api.ok_or("hostile: --api is needed")?;
    args.api_key = Secret::new(
        api_key
            .or_else(|| from_env(API_KEY_ENV))
            .ok_or("hostile: --api-key (or RILL_LOAD_API_KEY) is needed")?,
    );
    args.token_secret = Secret::new(
        token_secret
            .or_else(|| from_env(TOKEN_SECRET_ENV))
            .ok_or("hostile: --token-secret (or RILL_LOAD_TOKEN_SECRET) is needed")?,
    );
    let positive = [
        args.duration,
        args.churn_rate,
        args.reader_hold,
        args.parked_wait,
        args.trickle_secs,
        args.slowloris_wait,
    ];
    if positive.iter().any(|v| v.is_nan() || *v <= 0.0) || args.flood_rate.is_nan() {
        return Err("hostile: durations, waits and rates must be above 0".into());
    }
    if args.flood_rate < 0.0 || args.source_base > 249 || args.flood_body_bytes < 32 {
        return Err(
            "hostile: --flood-rate >= 0, --flood-body-bytes >= 32, --source-base at most 249"
                .into(),
        );
    }
    if args.users() == 0 && args.slowloris == 0 {
        return Err("hostile: no hostile client asked for".into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<HostileArgs, String> {
        let mut parser = lexopt::Parser::from_args(args.iter().copied());
        parse(&mut parser, |name| match name {
            API_KEY_ENV => Some("rk_x".to_owned()),
            TOKEN_SECRET_ENV => Some("s".to_owned()),
            _ => None,
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_options() {
        let args = parse_args(&[
            "--url",
            "http://a",
            "--url",
            "http://b",
            "--api",
            "http://c",
            "--floods",
            "2",
            "--flood-rate",
            "500",
        ])
        .expect("valid");
        assert_eq!(args.urls.len(), 2);
        assert_eq!((args.floods, args.flood_rate), (2, 500.0));
        assert_eq!(args.users(), 2 + 4 + 4 + 8);
        assert_eq!(args.api_key.expose(), "rk_x");
    }

    #[test]
    fn impossible_options_are_refused() {
        assert!(parse_args(&["--api", "http://c"]).is_err(), "no url");
        let base = ["--url", "http://a", "--api", "http://c"];
        for bad in [
            &["--duration", "0"][..],
            &["--flood-rate", "-1"],
            &["--source-base", "250"],
        ] {
            let line: Vec<&str> = base.iter().chain(bad).copied().collect();
            assert!(parse_args(&line).is_err(), "{bad:?}");
        }
    }
}
