//! The sequencer's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug)]
pub struct SequencerMetrics {
    pub messages_sequenced: Counter,
    pub records_invalid: Counter,
    pub transactions_aborted: Counter,
    pub transaction_records: Histogram,
    pub transaction_seconds: Histogram,
}

impl Default for SequencerMetrics {
    fn default() -> Self {
        Self {
            messages_sequenced: Counter::default(),
            records_invalid: Counter::default(),
            transactions_aborted: Counter::default(),
            transaction_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            transaction_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl SequencerMetrics {
    /// Registers every metric under `rill_sequencer_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rill_sequencer");
        r.register(
            "messages_sequenced",
            "Chat messages copied to the sequenced topic (committed)",
            self.messages_sequenced.clone(),
        );
        r.register(
            "records_invalid",
            "Records of the message topic skipped because they did not decode",
            self.records_invalid.clone(),
        );
        r.register(
            "transactions_aborted",
            "Transactions aborted and their records read again",
            self.transactions_aborted.clone(),
        );
        r.register(
            "transaction_records",
            "Records read per transaction",
            self.transaction_records.clone(),
        );
        r.register_with_unit(
            "transaction",
            "Time from a transaction's begin to its commit",
            Unit::Seconds,
            self.transaction_seconds.clone(),
        );
    }
}
