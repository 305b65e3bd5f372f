//! How far persist's consumer group is behind, per topic: the records
//! Kafka holds past the group's committed offsets, published as
//! `rill_persist_consumer_lag{topic}`.
//!
//! The probe asks the brokers, not the consumer: it reads the group's
//! committed offsets and each partition's high watermark with a client of
//! its own that never joins the group. So the number covers every
//! partition of the group, whichever pod holds it, and it keeps growing
//! when the consumer is stuck (a consumer only knows the partitions it
//! holds, and nothing while it hangs). Persist commits after the store
//! write, so lag is what is read but not yet stored plus what is not read.
//! Every persist pod reports the same numbers: take the `max`, not the
//! `sum`, across pods.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rill_runtime::shutdown::CancellationToken;

use crate::metrics::PersistMetrics;
use crate::settings::PersistSettings;

/// How long one measure (a few broker requests) may take in all, so that
/// with the brokers gone a measure fails in time for the next.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(5);

/// The topics persist's consumer subscribes to (`consumer.rs`): the lag
/// is measured on these.
pub fn topics(settings: &PersistSettings) -> Vec<String> {
    vec![
        settings.kafka.directory_topic.clone(),
        settings.kafka.sequenced_topic.clone(),
    ]
}

pub struct LagProbe {
    client: Arc<BaseConsumer>,
    topics: Vec<String>,
    interval: Duration,
    metrics: Arc<PersistMetrics>,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe")
            .field("topics", &self.topics)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl LagProbe {
    /// A probe of `settings.group_id` on `topics`. Nothing is contacted yet.
    pub fn new(
        settings: &PersistSettings,
        topics: Vec<String>,
        metrics: Arc<PersistMetrics>,
    ) -> Result<Self, KafkaError> {
        // The group's configuration, to read its committed offsets; this
        // client never subscribes, so it never joins the group.
        let client: BaseConsumer =
            rill_runtime::kafka::group_consumer_config(&settings.kafka, &settings.group_id)
                .create()?;
        Ok(Self {
            client: Arc::new(client),
            topics,
            interval: settings.consumer_lag_interval_ms,
            metrics,
        })
    }

    /// Measures at once, then every `consumer_lag_interval_ms`, until
    /// `shutdown`. A failed measure is logged and leaves the last numbers.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            client,
            topics,
            interval,
            metrics,
        } = self;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // librdkafka's calls block: on a thread of their own, which
            // shutdown does not wait for (the runtime would wait for a
            // spawn_blocking task, up to MEASURE_TIMEOUT with Kafka gone).
            let (answer, measured) = tokio::sync::oneshot::channel();
            let (client, topics) = (client.clone(), topics.clone());
            std::thread::spawn(move || {
                let _ = answer.send(measure(&client, &topics));
            });
            let measured = tokio::select! {
                _ = shutdown.cancelled() => break,
                measured = measured => measured,
            };
            match measured {
                Ok(Ok(lags)) => {
                    for (topic, lag) in lags {
                        metrics.consumer_lag(topic).set(lag);
                    }
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot measure the consumer lag"),
                Err(err) => tracing::warn!(error = %err, "the consumer-lag probe failed"),
            }
        }
        // Dropping the client closes it, which may wait for a broker that
        // is gone: on a thread of its own, not the runtime's.
        std::thread::spawn(move || drop(client));
    }
}

/// Each topic's lag: the sum over its partitions of the high watermark
/// less the committed offset (less the low watermark where the group has
/// committed nothing yet: it starts from the earliest record).
fn measure(client: &BaseConsumer, topics: &[String]) -> Result<Vec<(String, i64)>, KafkaError> {
    // Serves the client's queued events (errors, logs): nothing else polls it.
    let _ = client.poll(Duration::ZERO);
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut,
            ))
        } else {
            Ok(left)
        }
    };
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        for partition in rill_runtime::kafka::partitions_of(client, topic, left()?)? {
            wanted.add_partition(topic, partition);
        }
    }
    let committed = client.committed_offsets(wanted, left()?)?;
    let mut lags: Vec<(String, i64)> = topics.iter().map(|t| (t.clone(), 0)).collect();
    for element in committed.elements() {
        let (low, high) = client.fetch_watermarks(element.topic(), element.partition(), left()?)?;
        let from = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        if let Some((_, lag)) = lags.iter_mut().find(|(t, _)| t == element.topic()) {
            *lag += (high - from).max(0);
        }
    }
    Ok(lags)
}
