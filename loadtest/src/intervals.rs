//! Latency per interval of a sending phase: is it flat over the run?
//!
//! A message falls in the interval of its SEND time (carried in its body,
//! µs since the epoch), not of its delivery, so every worker puts a
//! message in the same interval, and a slow stretch shows where the sends
//! met it. The coordinator fixes the start and the width ([`IntervalPlan`])
//! and hands them to every worker; each keeps one HDR histogram per
//! interval and sends them back as (value, count) pairs, merged by index.
//! Memory is one histogram per interval that saw a delivery, and the
//! number of intervals is bounded by the run's duration
//! ([`MAX_INTERVALS`]).

use serde::{Deserialize, Serialize};

use crate::stats::{HistogramData, Latency};

/// The most intervals of one run (one histogram each, about 170 KB when
/// used): `--duration` / `--interval-secs` must stay under it.
pub const MAX_INTERVALS: u64 = 1_000;

/// Where the intervals start and how wide they are; the same in every
/// process of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalPlan {
    /// The sending phase's start, µs since the Unix epoch.
    pub start_us: u64,
    pub width_us: u64,
    /// The sending phase's length: the last interval ends there.
    pub duration_us: u64,
    /// ceil(duration / width), at least 1.
    pub count: u32,
}

impl IntervalPlan {
    /// Intervals of `width_secs` over `duration_secs` from `start_us`.
    pub fn new(start_us: u64, duration_secs: f64, width_secs: f64) -> Self {
        let width_us = ((width_secs * 1e6) as u64).max(1);
        let duration_us = (duration_secs.max(0.0) * 1e6) as u64;
        let count = duration_us.div_ceil(width_us).clamp(1, MAX_INTERVALS) as u32;
        Self {
            start_us,
            width_us,
            duration_us,
            count,
        }
    }

    /// The interval of a message sent at `sent_us`. A send a little before
    /// the start (clocks step) counts in the first; one a little past the
    /// end (a worker began its duration a few ms after the coordinator's
    /// start) in the last.
    pub fn index(&self, sent_us: u64) -> usize {
        let i = sent_us.saturating_sub(self.start_us) / self.width_us;
        i.min(u64::from(self.count) - 1) as usize
    }

    /// Seconds from the start to the beginning and the end of interval
    /// `i` (the last ends with the duration).
    fn bounds_secs(&self, i: usize) -> (f64, f64) {
        let start = i as u64 * self.width_us;
        let end = if i + 1 >= self.count as usize {
            self.duration_us.max(start)
        } else {
            start + self.width_us
        };
        (start as f64 / 1e6, end as f64 / 1e6)
    }
}

/// One histogram per interval, made on its first delivery.
#[derive(Debug, Clone)]
pub struct Intervals {
    plan: IntervalPlan,
    latency: Vec<Option<Latency>>,
}

/// Every interval's histogram, in order (empty ones as no pairs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IntervalsData(pub Vec<HistogramData>);

/// One interval of the report's series.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalSummary {
    /// Seconds from the sending phase's start to the interval's start.
    pub start_secs: f64,
    /// Seconds from the start to its end (the last may be shorter).
    pub end_secs: f64,
    /// Latencies recorded: deliveries of messages sent in the interval.
    pub deliveries: u64,
    /// `None` when nothing sent in the interval arrived.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Intervals {
    pub fn new(plan: IntervalPlan) -> Self {
        Self {
            plan,
            latency: vec![None; plan.count as usize],
        }
    }

    pub fn plan(&self) -> IntervalPlan {
        self.plan
    }

    /// A delivery of a message sent at `sent_us` that took `latency_us`.
    pub fn record(&mut self, sent_us: u64, latency_us: u64) {
        let i = self.plan.index(sent_us);
        self.latency[i]
            .get_or_insert_with(Latency::default)
            .record_us(latency_us);
    }

    pub fn data(&self) -> IntervalsData {
        IntervalsData(
            self.latency
                .iter()
                .map(|h| h.as_ref().map(Latency::data).unwrap_or_default())
                .collect(),
        )
    }

    /// Adds another process's histograms, interval by interval (made with
    /// the same plan; any past this plan's count are dropped).
    pub fn merge(&mut self, data: &IntervalsData) {
        for (slot, histogram) in self.latency.iter_mut().zip(&data.0) {
            if !histogram.0.is_empty() {
                slot.get_or_insert_with(Latency::default).merge(histogram);
            }
        }
    }

    /// Each interval's start and end (s from the phase's start) and its
    /// histogram, `None` when nothing was recorded in it.
    pub fn histograms(&self) -> impl Iterator<Item = (f64, f64, Option<&Latency>)> + '_ {
        self.latency.iter().enumerate().map(|(i, h)| {
            let (start, end) = self.plan.bounds_secs(i);
            (start, end, h.as_ref().filter(|h| !h.is_empty()))
        })
    }

    /// True when no interval holds a delivery.
    pub fn is_empty(&self) -> bool {
        self.histograms().all(|(_, _, h)| h.is_none())
    }

    pub fn summaries(&self) -> Vec<IntervalSummary> {
        self.histograms()
            .map(|(start_secs, end_secs, h)| {
                let s = h.map(Latency::summary);
                IntervalSummary {
                    start_secs,
                    end_secs,
                    deliveries: s.as_ref().map_or(0, |s| s.count),
                    p50_ms: s.as_ref().map(|s| s.p50_ms),
                    p99_ms: s.as_ref().map(|s| s.p99_ms),
                    p999_ms: s.as_ref().map(|s| s.p999_ms),
                    max_ms: s.as_ref().map(|s| s.max_ms),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000;

    #[test]
    fn a_plan_covers_the_duration_with_a_shorter_last_interval() {
        let plan = IntervalPlan::new(T0, 600.0, 60.0);
        assert_eq!(plan.count, 10);
        assert_eq!(IntervalPlan::new(T0, 10.0, 3.0).count, 4);
        assert_eq!(IntervalPlan::new(T0, 0.0, 60.0).count, 1, "never none");
        assert_eq!(
            IntervalPlan::new(T0, 1e9, 1.0).count as u64,
            MAX_INTERVALS,
            "bounded"
        );
        let summaries = Intervals::new(IntervalPlan::new(T0, 10.0, 3.0)).summaries();
        let bounds: Vec<(f64, f64)> = summaries
            .iter()
            .map(|s| (s.start_secs, s.end_secs))
            .collect();
        assert_eq!(
            bounds,
            vec![(0.0, 3.0), (3.0, 6.0), (6.0, 9.0), (9.0, 10.0)]
        );
    }

    #[test]
    fn messages_fall_in_the_interval_of_their_send_time() {
        let plan = IntervalPlan::new(T0, 3.0, 1.0);
        assert_eq!(plan.index(T0), 0);
        assert_eq!(plan.index(T0 + 999_999), 0);
        assert_eq!(plan.index(T0 + 1_000_000), 1, "a boundary opens the next");
        assert_eq!(plan.index(T0 + 2_500_000), 2);
        assert_eq!(plan.index(T0 + 3_004_000), 2, "a late send: the last");
        assert_eq!(plan.index(T0 - 5_000), 0, "an early send: the first");

        let mut intervals = Intervals::new(plan);
        // Sent in the first second, delivered (late) in the third: still
        // the first interval's.
        intervals.record(T0 + 500_000, 2_000_000);
        intervals.record(T0 + 2_100_000, 4_000);
        let s = intervals.summaries();
        assert_eq!(
            s.iter().map(|s| s.deliveries).collect::<Vec<_>>(),
            vec![1, 0, 1]
        );
        assert!((s[0].p50_ms.expect("p50") - 2000.0).abs() < 2.0);
        assert_eq!(s[1].p99_ms, None, "an empty interval has no percentiles");
    }

    #[test]
    fn workers_histograms_merge_interval_by_interval() {
        let plan = IntervalPlan::new(T0, 2.0, 1.0);
        let (mut a, mut b) = (Intervals::new(plan), Intervals::new(plan));
        for _ in 0..99 {
            a.record(T0 + 10, 1_000);
        }
        a.record(T0 + 20, 50_000);
        for _ in 0..100 {
            b.record(T0 + 1_500_000, 3_000);
        }
        b.record(T0 + 30, 1_000);
        // As the coordinator gets them: JSON lines.
        let mut merged = Intervals::new(plan);
        for worker in [&a, &b] {
            let json = serde_json::to_string(&worker.data()).expect("json");
            merged.merge(&serde_json::from_str(&json).expect("parse"));
        }
        let s = merged.summaries();
        assert_eq!(s[0].deliveries, 101);
        assert_eq!(s[1].deliveries, 100);
        assert!((s[0].p50_ms.expect("p50") - 1.0).abs() < 0.01);
        assert!((s[0].max_ms.expect("max") - 50.0).abs() < 0.1);
        assert!((s[1].p99_ms.expect("p99") - 3.0).abs() < 0.01);
        // An empty worker changes nothing.
        merged.merge(&Intervals::new(plan).data());
        assert_eq!(merged.summaries()[0].deliveries, 101);
    }
}
