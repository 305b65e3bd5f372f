//! `rill-load faults [OPTIONS]`: its command line.

use std::path::PathBuf;

use rill_runtime::Secret;

use crate::cli::{API_KEY_ENV, TOKEN_SECRET_ENV};

pub const USAGE: &str = "\
rill-load faults: clients that live through faults, and what each saw

USAGE:
    rill-load faults --url URL --api URL [OPTIONS]

Every client is a user with a session on one profile (WebSocket or SSE),
through --url (Traefik); it comes back after any disconnect with its last
position (WebSocket ?last_position=, SSE Last-Event-ID), after a back-off,
and records every message, gap and presence change. Sends go round robin
over the connected clients at --rate. At the end, each client's view is
compared with everything acknowledged: lost (with or without a gap),
duplicated, out of order, and presence ghosts; the store's history too.

    --url URL              where clients connect and send (Traefik)
    --api URL              the api: setup, and the stored history at the end
    --api-key KEY          or env RILL_LOAD_API_KEY
    --token-secret SECRET  or env RILL_LOAD_TOKEN_SECRET: clients use
                           connection tokens (no cookies: a cookie's login is
                           in Redis, which a restart may empty)
    --token-kid KID        the secret's key id
    --profiles P           profiles (default 4)
    --users U              clients per profile (default 8)
    --sse-percent N        share of SSE clients (default 50)
    --rate R               messages per second in all (default 20)
    --duration S           seconds of sending (default 60)
    --settle S             seconds after the last send before the views are
                           compared (default 20): presence must be right
                           10 s after a session ended
    --quitters N           per profile, clients that leave for good: the
                           first closes its session at 40% of the duration,
                           the next gives up at its first disconnect after
                           20% (default 2)
    --marks FILE           fault marks, one per line: UNIX_MS<TAB>LABEL
                           (read at the end; the scenario appends to it)
    --label NAME           a name for the run (default faults)
    --out FILE             the JSON report (default stdout)
    --svg FILE             the timeline plot
";

#[derive(Debug, Clone)]
pub struct FaultArgs {
    pub url: String,
    pub api: String,
    pub api_key: Secret,
    pub token_secret: Secret,
    pub token_kid: Option<String>,
    pub profiles: u32,
    pub users: u32,
    pub sse_percent: u32,
    pub rate: f64,
    pub duration: f64,
    pub settle: f64,
    pub quitters: u32,
    pub marks: Option<PathBuf>,
    pub label: String,
    pub out: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

/// Parses the options after `faults`; secrets not given come from `env`.
pub fn parse(
    parser: &mut lexopt::Parser,
    env: impl Fn(&str) -> Option<String>,
) -> Result<FaultArgs, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut url, mut api, mut api_key, mut token_secret, mut token_kid) =
        (None, None, None, None, None);
    let mut args = FaultArgs {
        url: String::new(),
        api: String::new(),
        api_key: Secret::new(""),
        token_secret: Secret::new(""),
        token_kid: None,
        profiles: 4,
        users: 8,
        sse_percent: 50,
        rate: 20.0,
        duration: 60.0,
        settle: 20.0,
        quitters: 2,
        marks: None,
        label: "faults".into(),
        out: None,
        svg: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Err(USAGE.into()),
            Long("url") => url = Some(parser.value()?.string()?),
            Long("api") => api = Some(parser.value()?.string()?),
            Long("api-key") => api_key = Some(parser.value()?.string()?),
            Long("token-secret") => token_secret = Some(parser.value()?.string()?),
            Long("token-kid") => token_kid = Some(parser.value()?.string()?),
            Long("profiles") => args.profiles = parser.value()?.parse()?,
            Long("users") => args.users = parser.value()?.parse()?,
            Long("sse-percent") => args.sse_percent = parser.value()?.parse()?,
            Long("rate") => args.rate = parser.value()?.parse()?,
            Long("duration") => args.duration = parser.value()?.parse()?,
            Long("settle") => args.settle = parser.value()?.parse()?,
            Long("quitters") => args.quitters = parser.value()?.parse()?,
            Long("marks") => args.marks = Some(parser.value()?.into()),
            Long("label") => args.label = parser.value()?.string()?,
            Long("out") => args.out = Some(parser.value()?.into()),
            Long("svg") => args.svg = Some(parser.value()?.into()),
            _ => return Err(arg.unexpected()),
        }
    }
    let from_env = |name| env(name).filter(|v: &String| !v.is_empty());
    args.url = url.ok_or("faults: --url is needed")?;
    args.api = api.ok_or("faults: --api is needed")?;
    args.api_key = Secret::new(
        api_key
            .or_else(|| from_env(API_KEY_ENV))
            .ok_or("faults: --api-key (or RILL_LOAD_API_KEY) is needed")?,
    );
    args.token_secret = Secret::new(
        token_secret
            .or_else(|| from_env(TOKEN_SECRET_ENV))
            .ok_or("faults: --token-secret (or RILL_LOAD_TOKEN_SECRET) is needed")?,
    );
    args.token_kid = token_kid;
    if args.profiles == 0 || args.users < 2 {
        return Err("faults: at least one profile and two users per profile".into());
    }
    if args.quitters >= args.users {
        return Err("faults: --quitters must leave someone on each profile".into());
    }
    if args.sse_percent > 100 || args.rate <= 0.0 || args.duration <= 0.0 || args.settle < 0.0 {
        return Err("faults: --sse-percent 0..100, --rate and --duration above 0".into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str], env: &[(&str, &str)]) -> Result<FaultArgs, String> {
        let mut parser = lexopt::Parser::from_args(args.iter().copied());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(&mut parser, |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn options_and_secrets_from_the_environment() {
        let args = parse_args(
            &[
                "--url", "http://t", "--api", "http://a", "--rate", "5", "--marks", "m.tsv",
            ],
            &[(API_KEY_ENV, "rk_x"), (TOKEN_SECRET_ENV, "s")],
        )
        .expect("valid");
        assert_eq!((args.url.as_str(), args.rate), ("http://t", 5.0));
        assert_eq!(args.api_key.expose(), "rk_x");
        assert_eq!(args.marks, Some(PathBuf::from("m.tsv")));
        assert_eq!((args.profiles, args.users, args.quitters), (4, 8, 2));
    }

    #[test]
    fn missing_or_impossible_options_are_refused() {
        let secrets = [(API_KEY_ENV, "k"), (TOKEN_SECRET_ENV, "s")];
        assert!(parse_args(&["--api", "http://a"], &secrets).is_err());
        assert!(parse_args(&["--url", "http://t", "--api", "http://a"], &[]).is_err());
        let all = ["--url", "http://t", "--api", "http://a", "--users", "2"];
        assert!(parse_args(&all, &secrets).is_err(), "two quitters of two");
    }
}
