//! Latency histograms (HDR, in µs) that travel between processes as
//! (value, count) pairs, and their summary.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded, in µs (larger values are clamped): 10 minutes.
const MAX_US: u64 = 600_000_000;

/// A histogram of µs with 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"))
    }
}

impl Latency {
    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_US));
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn data(&self) -> HistogramData {
        HistogramData(
            self.0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn merge(&mut self, data: &HistogramData) {
        for &(value, count) in &data.0 {
            let _ = self.0.record_n(value.clamp(1, MAX_US), count);
        }
    }

    pub fn quantile_us(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    pub fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.5)),
            p90_ms: ms(self.0.value_at_quantile(0.9)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
            mean_ms: self.0.mean() / 1000.0,
        }
    }
}

/// A histogram as (value, count) pairs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistogramData(pub Vec<(u64, u64)>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Microseconds since the Unix epoch: the clock every process shares.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip_between_processes() {
        let mut a = Latency::default();
        for us in [100, 200, 300, 10_000] {
            a.record_us(us);
        }
        let json = serde_json::to_string(&a.data()).expect("json");
        let mut b = Latency::default();
        b.merge(&serde_json::from_str(&json).expect("parse"));
        assert_eq!(b.len(), 4);
        assert_eq!(b.quantile_us(1.0), a.quantile_us(1.0));
        assert!((b.summary().p50_ms - 0.2).abs() < 0.01);
    }
}
