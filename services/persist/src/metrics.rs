//! The persistence consumer's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug)]
pub struct PersistMetrics {
    pub directory_events_written: Counter,
    pub messages_written: Counter,
    pub records_invalid: Counter,
    pub write_failures: Counter,
    pub batch_records: Histogram,
    pub batch_write_seconds: Histogram,
}

impl Default for PersistMetrics {
    fn default() -> Self {
        Self {
            directory_events_written: Counter::default(),
            messages_written: Counter::default(),
            records_invalid: Counter::default(),
            write_failures: Counter::default(),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            batch_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl PersistMetrics {
    /// Registers every metric under `rill_persist_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rill_persist");
        r.register(
            "directory_events_written",
            "Directory events written to the store",
            self.directory_events_written.clone(),
        );
        r.register(
            "messages_written",
            "Chat messages written to the store",
            self.messages_written.clone(),
        );
        r.register(
            "records_invalid",
            "Records skipped because they did not decode",
            self.records_invalid.clone(),
        );
        r.register(
            "write_failures",
            "Store writes that failed and were retried",
            self.write_failures.clone(),
        );
        r.register(
            "batch_records",
            "Records per store write",
            self.batch_records.clone(),
        );
        r.register_with_unit(
            "batch_write",
            "Time of one store write",
            Unit::Seconds,
            self.batch_write_seconds.clone(),
        );
    }
}
