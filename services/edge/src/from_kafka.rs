//! Where messages come back from Kafka: every edge reads every partition of
//! the message topic, from the end at start-up and outside any consumer
//! group, and hands each message to the hub for its local sessions.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use rill_domain::ChatMessage;
use rill_runtime::KafkaSettings;
use rill_runtime::kafka::{OffsetGuard, partitions_of, tail_consumer_config};
use rill_runtime::shutdown::CancellationToken;
use tracing::Instrument;

use crate::events::ServerEvent;
use crate::hub::Hub;
use crate::metrics::EdgeMetrics;

/// How long start-up waits for the broker's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer of the message topic, positioned at its end.
pub struct Delivery {
    consumer: StreamConsumer,
    topic: String,
    hub: Arc<Hub>,
    max_body_bytes: usize,
    metrics: Arc<EdgeMetrics>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Assigns every partition of the message topic at its current end.
    ///
    /// The end is read as each partition's high watermark now, not left to
    /// `Offset::End`, which librdkafka resolves only when fetching starts:
    /// a message sent once this returns is never skipped.
    pub async fn start(
        settings: &KafkaSettings,
        edge_id: &str,
        hub: Arc<Hub>,
        max_body_bytes: usize,
        metrics: Arc<EdgeMetrics>,
    ) -> Result<Self, KafkaError> {
        let config = tail_consumer_config(settings, edge_id);
        let topic = settings.message_topic.clone();
        let assignment = {
            let topic = topic.clone();
            let config = config.clone();
            tokio::task::spawn_blocking(move || end_of_every_partition(&config, &topic))
                .await
                .map_err(|_| KafkaError::Canceled)??
        };
        let consumer: StreamConsumer = config.create()?;
        consumer.assign(&assignment)?;
        tracing::info!(topic = %topic, partitions = assignment.count(), "delivery consumer assigned");
        Ok(Self {
            consumer,
            topic,
            hub,
            max_body_bytes,
            metrics,
        })
    }

    /// Delivers until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut guard = OffsetGuard::default();
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                record = self.consumer.recv() => record,
            };
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(error = %err, "message topic read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.metrics.records_consumed.inc();
            if !guard.is_new(record.topic(), record.partition(), record.offset()) {
                self.metrics.records_repeated.inc();
                continue;
            }
            let message = match ChatMessage::decode(
                record.payload().unwrap_or_default(),
                self.max_body_bytes,
            ) {
                Ok(message) => message,
                Err(err) => {
                    self.metrics.records_invalid.inc();
                    tracing::warn!(error = %err, partition = record.partition(), offset = record.offset(), "skipping invalid record");
                    continue;
                }
            };
            let span = tracing::info_span!("deliver message", message_id = %message.id, profile_id = %message.profile_id, sessions = tracing::field::Empty);
            rill_runtime::trace_context::set_parent_from(&span, record.headers());
            async {
                let event = ServerEvent::from_message(&message).to_outbound();
                let sessions = self.hub.deliver(message.profile_id, &event);
                tracing::Span::current().record("sessions", sessions);
            }
            .instrument(span)
            .await;
        }
    }
}

fn end_of_every_partition(
    config: &rdkafka::ClientConfig,
    topic: &str,
) -> Result<TopicPartitionList, KafkaError> {
    let probe: BaseConsumer = config.create()?;
    let mut list = TopicPartitionList::new();
    for partition in partitions_of(&probe, topic, METADATA_TIMEOUT)? {
        let (_, high) = probe.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        list.add_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    Ok(list)
}
