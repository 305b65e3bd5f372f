//! The api's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug)]
pub struct ApiMetrics {
    pub directory_events_published: Counter,
    pub pushes_published: Counter,
    /// Writes answered 202 because the store did not show them in time.
    pub writes_pending: Counter,
    /// Time from publishing a write to seeing it in the store.
    pub write_visible_seconds: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            directory_events_published: Counter::default(),
            pushes_published: Counter::default(),
            writes_pending: Counter::default(),
            write_visible_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        }
    }
}

impl ApiMetrics {
    /// Registers every metric under `rill_api_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rill_api");
        r.register(
            "directory_events_published",
            "Directory events Kafka acknowledged",
            self.directory_events_published.clone(),
        );
        r.register(
            "pushes_published",
            "Server-side publishes Kafka acknowledged",
            self.pushes_published.clone(),
        );
        r.register(
            "writes_pending",
            "Writes answered 202 because the store did not show them within the consistency timeout",
            self.writes_pending.clone(),
        );
        r.register_with_unit(
            "write_visible",
            "Time from a directory write's publish to the store showing it",
            Unit::Seconds,
            self.write_visible_seconds.clone(),
        );
    }
}
