//! The persistence consumer's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug)]
pub struct PersistMetrics {
    pub directory_events_written: Counter,
    pub messages_written: Counter,
    pub records_invalid: Counter,
    pub write_failures: Counter,
    pub batch_records: Histogram,
    pub batch_write_seconds: Histogram,
    /// Records of each topic past the group's committed offsets (`lag.rs`).
    consumer_lag: Family<TopicLabels, Gauge>,
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
            consumer_lag: Family::default(),
        }
    }
}

impl PersistMetrics {
    pub fn consumer_lag(&self, topic: String) -> Gauge {
        self.consumer_lag
            .get_or_create(&TopicLabels { topic })
            .clone()
    }

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
        r.register(
            "consumer_lag",
            "Records not yet stored and committed by the consumer group, per topic (the whole group's: the same from every pod)",
            self.consumer_lag.clone(),
        );
    }
}
