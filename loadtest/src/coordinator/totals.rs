//! The workers' results added up ([`Totals`]): counts, per-profile
//! sessions and acknowledged sends (hence the deliveries due), errors by
//! kind, and the latency histograms merged, over the run and per
//! interval.

use std::collections::BTreeMap;

use crate::intervals::{IntervalPlan, Intervals};
use crate::plan::{Progress, WorkerResult};
use crate::stats::Latency;

/// The workers' results added up.
#[derive(Debug)]
pub struct Totals {
    pub progress: Progress,
    pub sessions_per_profile: Vec<u64>,
    pub acked_per_profile: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Send to receive, over the whole run.
    pub latency: Latency,
    /// Send to receive per interval of the sending phase.
    pub latency_by_interval: Intervals,
    pub ack_latency: Latency,
    pub connect_latency: Latency,
    pub unique: u64,
    pub duplicates: u64,
    pub disconnected: u64,
    pub unacked: u64,
    /// The slowest worker's seconds from its first connect to its last.
    pub connect_secs: f64,
}

impl Totals {
    /// `results` added up over the run's `profiles`, the latency series
    /// on `plan` (the one the workers were given).
    pub fn of(results: &[WorkerResult], profiles: usize, plan: IntervalPlan) -> Self {
        let mut totals = Self {
            progress: results.iter().map(|r| &r.progress).sum(),
            sessions_per_profile: vec![0; profiles],
            acked_per_profile: vec![0; profiles],
            errors: BTreeMap::new(),
            latency: Latency::default(),
            latency_by_interval: Intervals::new(plan),
            ack_latency: Latency::default(),
            connect_latency: Latency::default(),
            unique: 0,
            duplicates: 0,
            disconnected: 0,
            unacked: 0,
            connect_secs: 0.0,
        };
        for r in results {
            for (p, n) in r.sessions_per_profile.iter().enumerate() {
                totals.sessions_per_profile[p] += n;
            }
            for (p, n) in r.acked_per_profile.iter().enumerate() {
                totals.acked_per_profile[p] += n;
            }
            for (kind, n) in &r.errors {
                *totals.errors.entry(kind.clone()).or_insert(0) += n;
            }
            totals.latency.merge(&r.latency);
            totals.latency_by_interval.merge(&r.latency_by_interval);
            totals.ack_latency.merge(&r.ack_latency);
            totals.connect_latency.merge(&r.connect_latency);
            totals.unique += r.unique_received;
            totals.duplicates += r.duplicates;
            totals.disconnected += r.disconnected;
            totals.unacked += r.unacked;
            totals.connect_secs = totals.connect_secs.max(r.connect_secs);
        }
        totals
    }

    /// Deliveries due: each acknowledged send times the sessions on its
    /// profile.
    pub fn expected(&self) -> u64 {
        self.sessions_per_profile
            .iter()
            .zip(&self.acked_per_profile)
            .map(|(s, a)| s * a)
            .sum()
    }
}

/// A histogram of `us`, for tests.
#[cfg(test)]
fn latency(us: &[u64]) -> Latency {
    let mut latency = Latency::default();
    for &us in us {
        latency.record_us(us);
    }
    latency
}

/// Two workers' results, for the tests here and the report's: 2
/// profiles, worker 0 with 3 + 1 sessions and 4 + 0 acked sends, worker 1
/// with 2 + 4 and 1 + 5.
#[cfg(test)]
pub(super) fn example_results(plan: IntervalPlan) -> Vec<WorkerResult> {
    let mut intervals = Intervals::new(plan);
    intervals.record(plan.start_us, 1_000);
    let worker =
        |index: u32, sessions: [u64; 2], acked: [u64; 2], latency_us: &[u64]| WorkerResult {
            index,
            progress: Progress {
                connected: sessions.iter().sum(),
                failed: 1,
                sent: acked.iter().sum::<u64>() + 1,
                acked: acked.iter().sum(),
                received: 20,
            },
            connect_secs: f64::from(index) + 1.5,
            errors: BTreeMap::from([("connect: refused".to_owned(), 1)]),
            sessions_per_profile: sessions.to_vec(),
            acked_per_profile: acked.to_vec(),
            unique_received: 19,
            duplicates: 1,
            disconnected: index.into(),
            latency: latency(latency_us).data(),
            latency_by_interval: intervals.data(),
            ack_latency: latency(&[500]).data(),
            connect_latency: latency(&[2_000]).data(),
            unacked: 1,
        };
    vec![
        worker(0, [3, 1], [4, 0], &[1_000, 2_000]),
        worker(1, [2, 4], [1, 5], &[3_000]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::now_us;

    #[test]
    fn the_workers_results_add_up() {
        let plan = IntervalPlan::new(now_us(), 2.0, 1.0);
        let totals = Totals::of(&example_results(plan), 2, plan);
        assert_eq!(totals.progress.connected, 10);
        assert_eq!(totals.progress.acked, 10);
        assert_eq!(totals.sessions_per_profile, [5, 5]);
        assert_eq!(totals.acked_per_profile, [5, 5]);
        // Profile 0: 5 sends to 5 sessions, profile 1 the same.
        assert_eq!(totals.expected(), 50);
        assert_eq!(totals.errors["connect: refused"], 2);
        assert_eq!(totals.latency.len(), 3);
        assert_eq!(totals.ack_latency.len(), 2);
        assert_eq!(totals.connect_latency.len(), 2);
        let by_interval = totals.latency_by_interval.summaries();
        assert_eq!(by_interval[0].deliveries, 2);
        assert_eq!(by_interval[1].deliveries, 0);
        assert_eq!(
            (
                totals.unique,
                totals.duplicates,
                totals.disconnected,
                totals.unacked
            ),
            (38, 2, 1, 2)
        );
        assert_eq!(totals.connect_secs, 2.5, "the slowest worker's");
        let none = Totals::of(&[], 2, plan);
        assert_eq!((none.expected(), none.progress.connected), (0, 0));
        assert!(none.latency_by_interval.is_empty());
    }
}
