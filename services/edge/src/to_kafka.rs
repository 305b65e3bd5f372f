//! Where a message goes to Kafka: validated, given its id, encoded as
//! protobuf, keyed by its sender, and acknowledged to the client only once
//! Kafka acknowledged it. Presence changes (a session opened or closed) go
//! the same way, to the presence topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rill_domain::{ChatMessage, MessageBody, MessageId, PresenceChange, ProfileId, UserId};
use tracing::Instrument as _;

use crate::metrics::EdgeMetrics;

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Body(#[from] rill_domain::BodyError),
    #[error("the message could not be written to Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// How long past `kafka.message_timeout_ms` a send waits for librdkafka's
/// answer before it is refused as timed out.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Publishes chat messages to the message topic, and presence changes.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    presence_topic: String,
    edge_id: String,
    max_body_bytes: usize,
    timeout: Duration,
    metrics: Arc<EdgeMetrics>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        presence_topic: String,
        edge_id: String,
        max_body_bytes: usize,
        timeout: Duration,
        metrics: Arc<EdgeMetrics>,
    ) -> Self {
        Self {
            producer,
            topic,
            presence_topic,
            edge_id,
            max_body_bytes,
            timeout,
            metrics,
        }
    }

    /// Sends `body` from `sender` to `profile`; returns the message's id once
    /// Kafka has it (`acks=all`).
    #[tracing::instrument(name = "send message", skip_all, fields(user_id = %sender, profile_id = %profile, message_id))]
    pub async fn publish(
        &self,
        id: MessageId,
        sender: UserId,
        profile: ProfileId,
        body: String,
    ) -> Result<MessageId, PublishError> {
        let started = Instant::now();
        let body = MessageBody::parse(body, self.max_body_bytes).inspect_err(|err| {
            self.metrics.refused(match err {
                rill_domain::BodyError::TooLarge { .. } => "too_large",
                _ => "invalid_body",
            });
        })?;
        let message = ChatMessage {
            id,
            profile_id: profile,
            sender_id: sender,
            body,
            sent_at_ms: now_ms(),
            edge_id: self.edge_id.clone(),
        };
        tracing::Span::current().record("message_id", tracing::field::display(message.id));
        let key = sender.to_string();
        let payload = message.encode();
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .headers(rill_runtime::trace_context::current_headers());
        // librdkafka times a message out after `message.timeout.ms`, but
        // its answer can come later (its timeout scan, a producer id being
        // fetched again after the broker returned): the client's answer
        // does not wait for that. A message refused this way may still be
        // written; a refused send was never promised not to be.
        let answer = self.producer.send_result(record).map_err(|(err, _)| err);
        let outcome = match answer {
            Ok(delivery) => {
                match tokio::time::timeout(self.timeout + ANSWER_GRACE, delivery).await {
                    Ok(Ok(Ok(_))) => Ok(()),
                    Ok(Ok(Err((err, _)))) => Err(err),
                    Ok(Err(_canceled)) => Err(KafkaError::Canceled),
                    Err(_elapsed) => Err(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageTimedOut,
                    )),
                }
            }
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => {
                self.metrics.sends_accepted.inc();
                self.metrics
                    .send_ack_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(message.id)
            }
            Err(err) => {
                self.metrics.refused("kafka");
                Err(PublishError::Kafka(err))
            }
        }
    }

    /// Queues a presence change at once (its place in its partition is
    /// fixed by this call) and returns the wait for Kafka's answer; a
    /// failure is logged (presence is a view: the registry in Redis stays
    /// right). A span, "publish presence", lasts until the answer; the
    /// record carries its trace context.
    pub fn presence(&self, change: PresenceChange) -> impl Future<Output = ()> + Send + 'static {
        let span = tracing::info_span!("publish presence", user_id = %change.user, profile_id = %change.profile, joined = change.joined, fence = change.fence);
        let key = change.key();
        let payload = change.encode();
        let record = FutureRecord::to(&self.presence_topic)
            .key(&key)
            .payload(&payload)
            .headers(span.in_scope(rill_runtime::trace_context::current_headers));
        let queued = self.producer.send_result(record).map_err(|(err, _)| err);
        async move {
            let outcome = match queued {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(err),
                    Err(_) => Err(KafkaError::Canceled),
                },
                Err(err) => Err(err),
            };
            if let Err(err) = outcome {
                // The span names the user, the profile and the change.
                tracing::warn!(error = %err, "presence change not published");
            }
        }
        .instrument(span)
    }

    /// Whether a broker answers a metadata request for the message topic
    /// within `timeout` (blocks: call it off the runtime).
    pub fn brokers_answer(&self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map(drop)
    }

    /// Waits for queued messages to reach Kafka, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(err) = self.producer.flush(timeout) {
            tracing::warn!(error = %err, "producer did not flush before shutdown");
        }
    }
}

pub use rill_runtime::clock::now_ms;
