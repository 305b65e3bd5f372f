//! How a run is laid out: how many worker processes and source addresses
//! ([`Layout`]), and which sessions each worker opens, through which URL
//! and transport, at which share of the ramp and the rate ([`plans`]).

use std::net::Ipv4Addr;

use crate::cli::{RunArgs, TransportMix};
use crate::login::TokenKey;
use crate::plan::{SessionPlan, Transport, WorkerPlan};
use crate::setup::Population;

/// Sessions per worker process by default: well under the 20,000 open
/// files one process may hold here.
const SESSIONS_PER_WORKER: u64 = 12_000;
/// Sessions per source address by default (about 28,000 ephemeral ports
/// each).
const SESSIONS_PER_SOURCE_IP: u64 = 10_000;

/// Worker processes and source addresses (127.0.0.1 ..= 127.0.0.K).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub workers: u32,
    pub source_ips: u32,
}

impl Layout {
    /// `--workers` and `--source-ips`, or enough of each for the sessions.
    pub fn of(args: &RunArgs) -> Self {
        let sessions = args.sessions();
        Self {
            workers: args
                .workers
                .unwrap_or_else(|| sessions.div_ceil(SESSIONS_PER_WORKER) as u32)
                .max(1),
            source_ips: args
                .source_ips
                .unwrap_or_else(|| sessions.div_ceil(SESSIONS_PER_SOURCE_IP).clamp(1, 254) as u32),
        }
    }
}

/// One plan per worker: the population's sessions dealt round robin over
/// the workers and the URLs, each worker with an equal share of the ramp
/// and the rate. An idle run (rate 0) pauses at half.
pub fn plans(args: &RunArgs, population: &Population, layout: Layout) -> Vec<WorkerPlan> {
    let Layout {
        workers,
        source_ips,
    } = layout;
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
            deadline_secs: args.timeout_secs(),
            pause_at_half: args.rate == 0.0,
            token_key: token_key(args),
        })
        .collect();
    let mut i = 0usize;
    for (p, (profile_id, users)) in population.profiles.iter().enumerate() {
        for user in users {
            plans[i % workers as usize].sessions.push(SessionPlan {
                url: args.urls[i % args.urls.len()].clone(),
                transport: transport(args, i),
                profile: p as u32,
                profile_id: *profile_id,
                user_id: *user,
            });
            i += 1;
        }
    }
    plans
}

/// The workers' token key: `--token-secret` and `--token-kid`, unless the
/// run is the Socket.IO peer's.
fn token_key(args: &RunArgs) -> Option<TokenKey> {
    match args.transport {
        TransportMix::Socketio => None,
        _ => args.token_secret.clone().map(|secret| TokenKey {
            kid: args.token_kid.clone(),
            secret,
        }),
    }
}

/// The transport of the run's `i`th session: with `mix`, the first
/// `--sse-percent` of every hundred are SSE.
fn transport(args: &RunArgs, i: usize) -> Transport {
    match args.transport {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup;

    fn args(profiles: u32, users: u32) -> RunArgs {
        RunArgs {
            urls: vec!["http://a".into(), "http://b".into()],
            profiles,
            users,
            ..RunArgs::default()
        }
    }

    #[test]
    fn the_layout_grows_with_the_sessions_unless_given() {
        assert_eq!(
            Layout::of(&args(1, 10)),
            Layout {
                workers: 1,
                source_ips: 1
            }
        );
        assert_eq!(
            Layout::of(&args(10, 10_001)),
            Layout {
                workers: 9,
                source_ips: 11
            },
            "100,010 sessions"
        );
        assert_eq!(
            Layout::of(&args(1000, 10_000)).source_ips,
            254,
            "127.0.0.254 at most"
        );
        let given = RunArgs {
            workers: Some(3),
            source_ips: Some(2),
            ..args(10, 10_001)
        };
        assert_eq!(
            Layout::of(&given),
            Layout {
                workers: 3,
                source_ips: 2
            }
        );
    }

    #[test]
    fn sessions_are_dealt_round_robin_with_shares_of_the_load() {
        let args = RunArgs {
            ramp: 300.0,
            rate: 30.0,
            ..args(2, 5)
        };
        let population = setup::made_up(2, 5);
        let layout = Layout {
            workers: 3,
            source_ips: 2,
        };
        let plans = plans(&args, &population, layout);
        assert_eq!(plans.len(), 3);
        let counts: Vec<usize> = plans.iter().map(|p| p.sessions.len()).collect();
        assert_eq!(counts, [4, 3, 3]);
        for (index, plan) in plans.iter().enumerate() {
            assert_eq!(plan.index as usize, index);
            assert_eq!(plan.profiles, 2);
            assert_eq!((plan.ramp_per_sec, plan.rate), (100.0, 10.0));
            assert_eq!(
                plan.source_ips,
                [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)]
            );
            assert!(!plan.pause_at_half, "it sends");
        }
        // The run's sessions in order: 0, 3, 6, 9 went to the first worker,
        // the URLs alternating over the run.
        let first: Vec<(&str, u32)> = plans[0]
            .sessions
            .iter()
            .map(|s| (s.url.as_str(), s.profile))
            .collect();
        assert_eq!(
            first,
            [
                ("http://a", 0),
                ("http://b", 0),
                ("http://a", 1),
                ("http://b", 1)
            ]
        );
        let (profile_id, users) = &population.profiles[1];
        let last = &plans[2].sessions[2];
        assert_eq!((last.profile_id, last.user_id), (*profile_id, users[3]));
        assert!(
            plans
                .iter()
                .flat_map(|p| &p.sessions)
                .all(|s| s.transport == Transport::Ws)
        );
    }

    #[test]
    fn a_mix_is_sse_for_its_share_of_every_hundred() {
        let args = RunArgs {
            transport: TransportMix::Mix,
            sse_percent: 30,
            ..args(1, 200)
        };
        let sse = (0..200)
            .filter(|&i| transport(&args, i) == Transport::Sse)
            .count();
        assert_eq!(sse, 60);
        assert_eq!(transport(&args, 29), Transport::Sse);
        assert_eq!(transport(&args, 30), Transport::Ws);
        assert_eq!(transport(&args, 129), Transport::Sse);
    }

    #[test]
    fn rill_workers_get_the_token_key_and_the_peers_do_not() {
        let secret = rill_runtime::Secret::new("a-token-secret-of-at-least-32-bytes");
        let args = RunArgs {
            token_secret: Some(secret.clone()),
            token_kid: Some("load".into()),
            ..args(1, 2)
        };
        let layout = Layout {
            workers: 2,
            source_ips: 1,
        };
        for plan in plans(&args, &setup::made_up(1, 2), layout) {
            let key = plan.token_key.expect("a key");
            assert_eq!((key.kid.as_deref(), &key.secret), (Some("load"), &secret));
        }
        let peer = RunArgs {
            transport: TransportMix::Socketio,
            ..args
        };
        let plans = plans(&peer, &setup::made_up(1, 2), layout);
        assert!(plans.iter().all(|p| p.token_key.is_none()));
    }

    #[test]
    fn an_idle_run_pauses_at_half() {
        let args = RunArgs {
            rate: 0.0,
            ..args(1, 4)
        };
        let layout = Layout {
            workers: 2,
            source_ips: 1,
        };
        let plans = plans(&args, &setup::made_up(1, 4), layout);
        assert!(plans.iter().all(|p| p.pause_at_half));
    }
}
