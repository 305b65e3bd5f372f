//! Whether this edge takes new sessions: available, warning (not ready, so
//! the ingress sends new sessions elsewhere while current ones stay) or
//! critical (new sessions get 503 with `Retry-After`), from its live
//! sessions against `limits.max_connections` and from its event-loop lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rill_runtime::shutdown::CancellationToken;
use tokio::time::Instant;

use crate::capacity::Capacity;
use crate::metrics::EdgeMetrics;
use crate::settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Available = 0,
    Warning = 1,
    Critical = 2,
}

#[derive(Debug)]
pub struct Availability {
    settings: settings::Availability,
    capacity: Arc<Capacity>,
    /// The probes' lag, smoothed (each probe counts for a quarter), in µs.
    lag_us: AtomicU64,
    metrics: Arc<EdgeMetrics>,
}

impl Availability {
    pub fn new(
        settings: settings::Availability,
        capacity: Arc<Capacity>,
        metrics: Arc<EdgeMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            capacity,
            lag_us: AtomicU64::new(0),
            metrics,
        })
    }

    /// The level now; also published as `rill_edge_availability`.
    pub fn level(&self) -> Level {
        let level = self.sessions_level().max(self.lag_level());
        self.metrics.availability.set(level as i64);
        level
    }

    fn sessions_level(&self) -> Level {
        let (live, max) = (self.capacity.live() as u64, self.capacity.max() as u64);
        let at = |percent: u8| live * 100 >= u64::from(percent) * max;
        if at(self.settings.critical_percent) {
            Level::Critical
        } else if at(self.settings.warning_percent) {
            Level::Warning
        } else {
            Level::Available
        }
    }

    fn lag_level(&self) -> Level {
        let lag = Duration::from_micros(self.lag_us.load(Ordering::Relaxed));
        if lag >= self.settings.lag_critical_ms {
            Level::Critical
        } else if lag >= self.settings.lag_warning_ms {
            Level::Warning
        } else {
            Level::Available
        }
    }

    /// Measures how late a timer fires, every `probe_interval_ms`, until
    /// `shutdown`: a busy or starved event loop runs it late.
    pub async fn probe_lag(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = self.settings.probe_interval_ms;
        loop {
            let asked = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let lag = asked.elapsed().saturating_sub(interval);
            // Smoothed, so that one late timer (a page fault, a busy
            // neighbour) does not take the edge out of the ingress: a lag
            // has to last a few probes to change the level.
            let sample = lag.as_micros() as u64;
            let smoothed = (self.lag_us.load(Ordering::Relaxed) * 3 + sample) / 4;
            self.lag_us.store(smoothed, Ordering::Relaxed);
            self.metrics
                .event_loop_lag_seconds
                .set(Duration::from_micros(smoothed).as_secs_f64());
            self.level();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Transport;

    fn availability(max: usize) -> (Arc<Availability>, Arc<Capacity>) {
        let metrics = Arc::new(EdgeMetrics::default());
        let capacity = Capacity::new(max, metrics.clone());
        let settings = settings::Availability {
            warning_percent: 50,
            critical_percent: 100,
            ..settings::Availability::default()
        };
        (
            Availability::new(settings, capacity.clone(), metrics),
            capacity,
        )
    }

    #[test]
    fn sessions_against_capacity_set_the_level() {
        let (availability, capacity) = availability(4);
        assert_eq!(availability.level(), Level::Available);
        let _a = capacity.try_acquire(Transport::Sse).expect("room");
        let _b = capacity.try_acquire(Transport::Sse).expect("room");
        assert_eq!(availability.level(), Level::Warning);
        let _c = capacity.try_acquire(Transport::Sse).expect("room");
        let _d = capacity.try_acquire(Transport::Sse).expect("room");
        assert_eq!(availability.level(), Level::Critical);
        assert_eq!(availability.metrics.availability.get(), 2);
    }

    #[test]
    fn lag_sets_the_level_too() {
        let (availability, _capacity) = availability(100);
        availability.lag_us.store(150_000, Ordering::Relaxed);
        assert_eq!(availability.level(), Level::Warning);
        availability.lag_us.store(600_000, Ordering::Relaxed);
        assert_eq!(availability.level(), Level::Critical);
    }
}
