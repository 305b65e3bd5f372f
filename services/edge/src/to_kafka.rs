//! Where a message goes to Kafka: validated, given its id, encoded as
//! protobuf, keyed by its sender, and acknowledged to the client only once
//! Kafka acknowledged it. Presence changes (a session opened or closed) go
//! the same way, to the presence topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
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

/// The first pause before a presence change Kafka refused is sent again.
const PRESENCE_RETRY_FIRST: Duration = Duration::from_millis(250);

/// The longest pause between two tries of a presence change.
const PRESENCE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Presence joins on their way to Kafka, by (user, profile, fence), for
/// their session's leave to wait on. An entry lives from the join's
/// publish to Kafka's ack: milliseconds, or while a broker outage lasts.
type Joining = Mutex<HashMap<(UserId, ProfileId, u64), Shared<BoxFuture<'static, ()>>>>;

/// Publishes chat messages to the message topic, and presence changes.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    presence_topic: String,
    edge_id: String,
    max_body_bytes: usize,
    timeout: Duration,
    metrics: Arc<EdgeMetrics>,
    joining: Arc<Joining>,
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
            joining: Arc::default(),
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

    /// Publishes a presence change: the returned future ends once Kafka has
    /// it. A change Kafka refuses (the broker is away) is sent again, after
    /// a pause that doubles from [`PRESENCE_RETRY_FIRST`] up to
    /// [`PRESENCE_RETRY_MAX`], until Kafka takes it: a dropped `leave`
    /// would leave its user listed as live in every open view for ever.
    /// What keeps the retries bounded is the lock: the session's lock is
    /// held (and refreshed) until its `leave` is in Kafka
    /// ([`Lease::release_after`](crate::session::Lease::release_after)),
    /// so a pair has at most one join and one leave waiting, and its next
    /// session's `join` comes after them.
    ///
    /// A `leave` waits for its session's `join` (same user, profile and
    /// fence) if that is still on its way: a retried join must not land
    /// after its leave. A span, "publish presence", lasts until Kafka has
    /// the change; the record carries its trace context.
    pub fn presence(&self, change: PresenceChange) -> impl Future<Output = ()> + Send + 'static {
        let span = tracing::info_span!("publish presence", user_id = %change.user, profile_id = %change.profile, joined = change.joined, fence = change.fence);
        let session = (change.user, change.profile, change.fence);
        let record = PresenceRecord {
            producer: self.producer.clone(),
            topic: self.presence_topic.clone(),
            key: change.key(),
            payload: change.encode(),
            headers: span.in_scope(rill_runtime::trace_context::current_headers),
            metrics: self.metrics.clone(),
        };
        let mut joining = self.joining.lock().unwrap_or_else(|e| e.into_inner());
        if change.joined {
            let all = self.joining.clone();
            let publish = async move {
                record.publish().await;
                all.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&session);
            }
            .instrument(span)
            .boxed()
            .shared();
            joining.insert(session, publish.clone());
            publish.left_future()
        } else {
            let join = joining.get(&session).cloned();
            async move {
                if let Some(join) = join {
                    join.await;
                }
                record.publish().await;
            }
            .instrument(span)
            .right_future()
        }
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

/// A presence change, encoded, and what it takes to send it again.
struct PresenceRecord {
    producer: FutureProducer,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: OwnedHeaders,
    metrics: Arc<EdgeMetrics>,
}

impl PresenceRecord {
    /// Sends the change until Kafka has it (see [`Publisher::presence`]).
    /// Shutdown does not wait for it for ever: past the drain's grace the
    /// edge stops without retiring, and a survivor publishes the leaves
    /// of the sessions whose locks it still held (`session::peers`).
    async fn publish(self) {
        let mut pause = PRESENCE_RETRY_FIRST;
        let mut tries = 1u32;
        loop {
            let record = FutureRecord::to(&self.topic)
                .key(&self.key)
                .payload(&self.payload)
                .headers(self.headers.clone());
            let outcome = match self.producer.send_result(record) {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(err),
                    Err(_canceled) => Err(KafkaError::Canceled),
                },
                Err((err, _)) => Err(err),
            };
            let Err(err) = outcome else {
                if tries > 1 {
                    tracing::info!(tries, "presence change published after Kafka refused it");
                }
                return;
            };
            if tries == 1 {
                // Once per change: an outage refuses thousands.
                tracing::warn!(error = %err, "presence change not published: sending it again until Kafka has it");
            }
            self.metrics.presence_retries.inc();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PRESENCE_RETRY_MAX);
            tries += 1;
        }
    }
}

pub use rill_runtime::clock::now_ms;
