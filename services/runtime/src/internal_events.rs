//! Events that are both a metric and a log line, as named types (vector's
//! `internal_events` is the model): each service counts and logs them the
//! same way, and the counter and the message cannot drift apart.

use std::fmt::Display;

use prometheus_client::metrics::counter::Counter;
use rdkafka::message::Message;

/// An event that counts itself and logs itself.
pub trait InternalEvent {
    fn emit(self);
}

/// A Kafka record that could not be used (it did not decode, or came from
/// a topic the consumer does not read): counted in `counter` (a service's
/// `records_invalid_total`) and logged with where it is, then skipped.
pub struct RecordSkipped<'a, M> {
    pub record: &'a M,
    pub error: &'a dyn Display,
    pub counter: &'a Counter,
}

impl<M> std::fmt::Debug for RecordSkipped<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSkipped")
            .field("error", &self.error.to_string())
            .finish_non_exhaustive()
    }
}

impl<M: Message> InternalEvent for RecordSkipped<'_, M> {
    fn emit(self) {
        self.counter.inc();
        tracing::warn!(
            error = %self.error,
            topic = self.record.topic(),
            partition = self.record.partition(),
            offset = self.record.offset(),
            "skipping invalid record"
        );
    }
}
