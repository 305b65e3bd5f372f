//! Where messages come back from Kafka: every edge reads every partition of
//! the message topic, from the end at start-up and outside any consumer
//! group, and hands each message to the hub for its local sessions.
//!
//! The same consumer reads all four of Rill's topics: messages; the
//! directory topic, so that an unbind (or a deleted user or profile)
//! reaches the membership cache and ends the affected sessions within
//! moments; the push topic (the api's publishes); and the presence topic
//! (joins and leaves, for every session on the profile).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use rill_domain::{ChatMessage, DirectoryChange, DirectoryEvent, PresenceChange, Push, PushTarget};
use rill_runtime::backoff::Backoff;
use rill_runtime::internal_events::{InternalEvent as _, RecordSkipped};
use rill_runtime::kafka::{partitions_of, tail_consumer_config};
use rill_runtime::shutdown::CancellationToken;
use rill_runtime::{KafkaSettings, Topic};
use tracing::Instrument;

use crate::events::ServerEvent;
use crate::hub::Hub;
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;

/// How long start-up waits for the broker's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between reads after a failed one.
const READ_RETRY_FIRST: Duration = Duration::from_millis(100);
const READ_RETRY_MAX: Duration = Duration::from_secs(5);

/// The consumer of Rill's topics, positioned at their ends.
pub struct Delivery {
    consumer: StreamConsumer,
    topics: KafkaSettings,
    hub: Arc<Hub>,
    membership: Arc<Membership>,
    max_body_bytes: usize,
    max_presence_users: usize,
    metrics: Arc<EdgeMetrics>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("brokers", &self.topics.brokers)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Assigns every partition of the topics at its current end.
    ///
    /// The end is read as each partition's high watermark now, not left to
    /// `Offset::End`, which librdkafka resolves only when fetching starts:
    /// a message sent once this returns is never skipped.
    pub async fn start(
        settings: &KafkaSettings,
        edge_id: &str,
        hub: Arc<Hub>,
        membership: Arc<Membership>,
        max_body_bytes: usize,
        max_presence_users: usize,
        metrics: Arc<EdgeMetrics>,
    ) -> Result<Self, KafkaError> {
        let config = tail_consumer_config(settings, edge_id);
        let topics = Topic::ALL.map(|topic| settings.topic_name(topic).to_owned());
        let assignment = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || end_of_every_partition(&config, &topics))
                .await
                .map_err(|_| KafkaError::Canceled)??
        };
        let consumer: StreamConsumer = config.create()?;
        consumer.assign(&assignment)?;
        tracing::info!(
            partitions = assignment.count(),
            "delivery consumer assigned"
        );
        Ok(Self {
            consumer,
            topics: settings.clone(),
            hub,
            membership,
            max_body_bytes,
            max_presence_users,
            metrics,
        })
    }

    /// Delivers until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(READ_RETRY_FIRST, READ_RETRY_MAX);
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                record = self.consumer.recv() => record,
            };
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = %err, retry_in = ?pause, "Kafka read failed; retrying");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            backoff.reset();
            self.metrics.records_consumed.inc();
            match self.topics.topic(record.topic()) {
                Some(Topic::Messages) => self.deliver(&record).await,
                Some(Topic::Push) => self.push(&record),
                Some(Topic::Presence) => self.presence(&record),
                Some(Topic::Directory) => self.apply_directory(&record),
                None => self.invalid(&record, &"not one of Rill's topics"),
            }
        }
    }

    async fn deliver(&self, record: &BorrowedMessage<'_>) {
        let payload = record.payload().unwrap_or_default();
        let message = match ChatMessage::decode(payload, self.max_body_bytes) {
            Ok(message) => message,
            Err(err) => return self.invalid(record, &err),
        };
        let span = tracing::info_span!("deliver message", message_id = %message.id, profile_id = %message.profile_id, sessions = tracing::field::Empty);
        rill_runtime::trace_context::set_parent_from(&span, record.headers());
        async {
            let event = ServerEvent::from_message(&message).to_outbound();
            let sessions = self
                .hub
                .deliver_message(message.profile_id, message.id, &event);
            tracing::Span::current().record("sessions", sessions);
        }
        .instrument(span)
        .await;
    }

    fn push(&self, record: &BorrowedMessage<'_>) {
        let push = match Push::decode(record.payload().unwrap_or_default()) {
            Ok(push) => push,
            Err(err) => return self.invalid(record, &err),
        };
        let data: serde_json::Value = match serde_json::from_str(&push.data_json) {
            Ok(data) => data,
            Err(err) => return self.invalid(record, &err),
        };
        let event = ServerEvent::Push {
            id: push.id,
            event: &push.event,
            data: &data,
            sent_at: push.sent_at_ms,
        };
        let event = event.to_outbound();
        let sessions = match push.target {
            PushTarget::Profile(profile) => self.hub.deliver(profile, &event),
            PushTarget::User(user) => self.hub.deliver_to_user(user, &event),
        };
        tracing::debug!(push_id = %push.id, sessions, "push delivered");
    }

    fn presence(&self, record: &BorrowedMessage<'_>) {
        let change = match PresenceChange::decode(record.payload().unwrap_or_default()) {
            Ok(change) => change,
            Err(err) => return self.invalid(record, &err),
        };
        if self.hub.sessions_on(change.profile) > self.max_presence_users {
            // A big room: its sessions opened with a truncated list and get
            // no event per arrival (`limits.max_presence_users`).
            self.metrics.presence_events_skipped.inc();
            return;
        }
        let event = if change.joined {
            ServerEvent::Join {
                profile_id: change.profile,
                user_id: change.user,
            }
        } else {
            ServerEvent::Leave {
                profile_id: change.profile,
                user_id: change.user,
            }
        };
        self.hub.deliver(change.profile, &event.to_outbound());
    }

    fn apply_directory(&self, record: &BorrowedMessage<'_>) {
        let event = match DirectoryEvent::decode(record.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(err) => return self.invalid(record, &err),
        };
        self.membership.apply(&event.change);
        let ended = match event.change {
            DirectoryChange::Unbound { user, profile } => self.hub.evict_member(user, profile),
            DirectoryChange::UserDeleted(user) => self.hub.evict_user(user),
            DirectoryChange::ProfileDeleted(profile) => self.hub.evict_profile(profile),
            DirectoryChange::LoginsEnded {
                user,
                login: Some(login),
            } => self.hub.evict_login(user, login),
            DirectoryChange::LoginsEnded { user, login: None } => self.hub.evict_logins(user),
            _ => 0,
        };
        if ended > 0 {
            tracing::info!(sessions = ended, event_id = %event.id, "sessions ended by a directory change");
        }
    }

    fn invalid(&self, record: &BorrowedMessage<'_>, err: &dyn std::fmt::Display) {
        RecordSkipped {
            record,
            error: err,
            counter: &self.metrics.records_invalid,
        }
        .emit();
    }
}

fn end_of_every_partition(
    config: &rdkafka::ClientConfig,
    topics: &[String],
) -> Result<TopicPartitionList, KafkaError> {
    let probe: BaseConsumer = config.create()?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in partitions_of(&probe, topic, METADATA_TIMEOUT)? {
            let (_, high) = probe.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
            list.add_partition_offset(topic, partition, Offset::Offset(high))?;
        }
    }
    Ok(list)
}
