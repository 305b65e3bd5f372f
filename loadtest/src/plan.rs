//! What the coordinator sends a worker (one JSON line on its stdin, then
//! `go` and the latency series' [`IntervalPlan`] as JSON when every worker
//! has connected) and what a worker writes back (JSON lines on its
//! stdout: progress, connected, result).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::intervals::IntervalsData;
use crate::login::TokenKey;
use crate::stats::HistogramData;

/// The line that starts the sending: `go ` and the [`IntervalPlan`]
/// (`crate::intervals::IntervalPlan`) as JSON.
pub const GO: &str = "go ";

/// How a session talks to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
    Socketio,
}

/// One live session: `user` on `profile` (an index into the run's
/// profiles), through `url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionPlan {
    pub url: String,
    pub transport: Transport,
    pub profile: u32,
    pub profile_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub index: u32,
    pub sessions: Vec<SessionPlan>,
    /// Number of profiles of the whole run (length of per-profile counts).
    pub profiles: u32,
    /// This worker's share of the ramp, sessions per second.
    pub ramp_per_sec: f64,
    /// This worker's share of the publish rate, messages per second.
    pub rate: f64,
    pub duration_secs: f64,
    pub drain_secs: f64,
    pub source_ips: Vec<Ipv4Addr>,
    pub body_bytes: usize,
    /// How long one connect (login included) may take, in seconds.
    pub connect_timeout_secs: f64,
    /// The worker exits by itself after this many seconds, whatever happens.
    pub deadline_secs: f64,
    /// Connect half the sessions, report `half`, and wait for `more`
    /// before the rest: the coordinator samples the edges' memory between
    /// the two halves (the marginal cost of a session).
    pub pause_at_half: bool,
    /// What the workers sign their users' connection tokens with; `None`
    /// for the Socket.IO peer, which logs no one in.
    pub token_key: Option<TokenKey>,
}

/// Running counts, sent every half second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub connected: u64,
    pub failed: u64,
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
}

/// The workers' counts added up: the whole run's.
impl<'a> std::iter::Sum<&'a Progress> for Progress {
    fn sum<I: Iterator<Item = &'a Progress>>(progress: I) -> Self {
        progress.fold(Progress::default(), |a, p| Progress {
            connected: a.connected + p.connected,
            failed: a.failed + p.failed,
            sent: a.sent + p.sent,
            acked: a.acked + p.acked,
            received: a.received + p.received,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    Progress(Progress),
    /// The first half of the sessions has connected or failed.
    Half(Progress),
    /// Every session of this worker has connected or failed.
    Connected(Progress),
    Result(Box<WorkerResult>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub index: u32,
    pub progress: Progress,
    /// Seconds from the first connect to the last.
    pub connect_secs: f64,
    pub errors: BTreeMap<String, u64>,
    /// Sessions connected when sending began, per profile.
    pub sessions_per_profile: Vec<u64>,
    /// Sends the server acknowledged, per profile.
    pub acked_per_profile: Vec<u64>,
    /// Messages of this run received: distinct per session, and repeats.
    pub unique_received: u64,
    pub duplicates: u64,
    /// Sessions that were closed or failed after they had connected.
    pub disconnected: u64,
    pub latency: HistogramData,
    /// `latency` again, per interval of the sending phase by send time.
    pub latency_by_interval: IntervalsData,
    pub ack_latency: HistogramData,
    pub connect_latency: HistogramData,
    /// Sends whose acknowledgement had not come when the run ended.
    pub unacked: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_adds_up_count_by_count() {
        let workers = [
            Progress {
                connected: 3,
                failed: 1,
                sent: 10,
                acked: 9,
                received: 30,
            },
            Progress {
                connected: 4,
                failed: 0,
                sent: 5,
                acked: 5,
                received: 20,
            },
        ];
        let total: Progress = workers.iter().sum();
        assert_eq!(
            (
                total.connected,
                total.failed,
                total.sent,
                total.acked,
                total.received
            ),
            (7, 1, 15, 14, 50)
        );
        let none: Progress = [].iter().sum();
        assert_eq!(none.connected + none.received, 0);
    }
}
