//! Where messages come back from Kafka: every edge reads every partition of
//! the sequenced topic (each profile's messages in their one order, see
//! the sequencer), outside any consumer group, keeps its recent records
//! for recovery (`recovery.rs`) and hands each message to the hub for its
//! local sessions. At start-up it reads the sequenced topic from
//! `recovery.window_secs` back, to fill the window (sessions open once it
//! has caught up, so nothing that old is delivered live), and the other
//! topics from their ends.
//!
//! The same consumer reads the other topics Rill delivers: the
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
use rill_domain::{
    ChatMessage, DirectoryChange, DirectoryEvent, PresenceChange, Push, PushTarget, Sequenced,
};
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
use crate::recovery::RecentMessages;
use crate::settings::Recovery;

/// How long start-up waits for the broker's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between reads after a failed one.
const READ_RETRY_FIRST: Duration = Duration::from_millis(100);
const READ_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the start-up read checks whether it has caught up.
const CATCH_UP_CHECK: Duration = Duration::from_millis(100);

/// The consumer of Rill's delivery topics.
pub struct Delivery {
    consumer: StreamConsumer,
    topics: KafkaSettings,
    hub: Arc<Hub>,
    recent: Arc<RecentMessages>,
    /// Per partition of the sequenced topic, its end when the edge
    /// started: the start-up read has caught up once it is past them all.
    live_from: Vec<i64>,
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

/// Where the delivery consumer starts: each partition's offset, and the
/// sequenced topic's ends (see [`Delivery::live_from`]).
struct Start {
    assignment: TopicPartitionList,
    sequenced_ends: Vec<i64>,
    sequenced_starts: Vec<i64>,
}

/// What the delivery consumer needs besides the topics.
#[derive(Debug)]
pub struct DeliveryParts {
    pub hub: Arc<Hub>,
    pub membership: Arc<Membership>,
    pub max_body_bytes: usize,
    pub max_presence_users: usize,
    pub metrics: Arc<EdgeMetrics>,
}

impl Delivery {
    /// Assigns every partition: the sequenced topic's from
    /// `window` back, the others at their current ends. Returns it with
    /// the window it fills (sized for the sequenced topic's partitions).
    ///
    /// The end is read as each partition's high watermark now, not left to
    /// `Offset::End`, which librdkafka resolves only when fetching starts:
    /// a message sent once this returns is never skipped.
    pub async fn start(
        settings: &KafkaSettings,
        edge_id: &str,
        recovery: &Recovery,
        parts: DeliveryParts,
    ) -> Result<(Self, Arc<RecentMessages>), KafkaError> {
        let config = tail_consumer_config(settings, edge_id);
        let start = {
            let config = config.clone();
            let settings = settings.clone();
            let window = recovery.window_secs;
            tokio::task::spawn_blocking(move || where_to_start(&config, &settings, window))
                .await
                .map_err(|_| KafkaError::Canceled)??
        };
        let recent = Arc::new(RecentMessages::new(recovery, start.sequenced_ends.len()));
        for (partition, offset) in start.sequenced_starts.iter().enumerate() {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            recent.start(partition, u64::try_from(*offset).unwrap_or(0));
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.assign(&start.assignment)?;
        tracing::info!(
            partitions = start.assignment.count(),
            backfill = start
                .sequenced_ends
                .iter()
                .zip(&start.sequenced_starts)
                .map(|(end, start)| end - start)
                .sum::<i64>(),
            "delivery consumer assigned"
        );
        let delivery = Self {
            consumer,
            topics: settings.clone(),
            hub: parts.hub,
            recent: recent.clone(),
            live_from: start.sequenced_ends,
            membership: parts.membership,
            max_body_bytes: parts.max_body_bytes,
            max_presence_users: parts.max_presence_users,
            metrics: parts.metrics,
        };
        Ok((delivery, recent))
    }

    /// Delivers until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(READ_RETRY_FIRST, READ_RETRY_MAX);
        let mut catch_up = tokio::time::interval(CATCH_UP_CHECK);
        loop {
            let caught_up = self.recent.is_caught_up();
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = catch_up.tick(), if !caught_up => {
                    self.check_caught_up();
                    continue;
                }
                record = self.consumer.recv() => record,
            };
            let record = match record {
                Ok(record) => record,
                // librdkafka reconnects by itself and queues one event per
                // failed attempt: waiting after each would hold delivery
                // back long after the broker returned.
                Err(err) if rill_runtime::kafka::is_connection_event(&err) => {
                    tracing::debug!(error = %err, "Kafka connection lost; the client reconnects");
                    continue;
                }
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
                Some(Topic::Sequenced) => self.deliver(&record).await,
                Some(Topic::Push) => self.push(&record),
                Some(Topic::Presence) => self.presence(&record),
                Some(Topic::Directory) => self.apply_directory(&record),
                Some(Topic::Messages) | None => {
                    self.invalid(&record, &"not a topic the edge reads")
                }
            }
        }
    }

    /// Whether the start-up read reached the end every partition of the
    /// sequenced topic had when the edge started (the consumer's position,
    /// which also steps over transaction markers, which are never read).
    fn check_caught_up(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let topic = &self.topics.sequenced_topic;
        let behind = self.live_from.iter().enumerate().any(|(partition, end)| {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            match positions
                .find_partition(topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(at)) => at < *end,
                _ => *end > 0,
            }
        });
        if !behind {
            tracing::info!("recovery window read back: replays may go");
            self.recent.set_caught_up();
        }
    }

    async fn deliver(&self, record: &BorrowedMessage<'_>) {
        let Ok(offset) = u64::try_from(record.offset()) else {
            return self.invalid(record, &"a negative offset");
        };
        let payload = record.payload().unwrap_or_default();
        let message = match ChatMessage::decode(payload, self.max_body_bytes) {
            Ok(message) => message,
            Err(err) => return self.invalid(record, &err),
        };
        let sequenced = Sequenced { message, offset };
        let message = &sequenced.message;
        let span = tracing::info_span!("deliver message", message_id = %message.id, profile_id = %message.profile_id, position = offset, sessions = tracing::field::Empty);
        rill_runtime::trace_context::set_parent_from(&span, record.headers());
        async {
            let event = ServerEvent::from_message(&sequenced).to_outbound();
            self.recent.push(
                record.partition(),
                offset,
                message.profile_id,
                message.id,
                &event,
            );
            // Sessions open only once the start-up read caught up, so the
            // old records it reads reach none.
            let sessions = self.hub.deliver(message.profile_id, &event);
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
        // Continues the api's "publish push" trace, as deliveries of messages
        // continue the sender's.
        let span = tracing::info_span!("deliver push", push_id = %push.id, sessions = tracing::field::Empty);
        rill_runtime::trace_context::set_parent_from(&span, record.headers());
        let _entered = span.enter();
        let sessions = match push.target {
            PushTarget::Profile(profile) => self.hub.deliver(profile, &event),
            PushTarget::User(user) => self.hub.deliver_to_user(user, &event),
        };
        span.record("sessions", sessions);
        tracing::debug!(sessions, "push delivered");
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

/// Every partition of the delivery topics and where to start it: the
/// sequenced topic's at the first record of the last `window`, the others
/// at their ends.
fn where_to_start(
    config: &rdkafka::ClientConfig,
    settings: &KafkaSettings,
    window: Duration,
) -> Result<Start, KafkaError> {
    let probe: BaseConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    let mut starts = Vec::new();
    let since_ms = rill_runtime::clock::now_ms()
        .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    for topic in [
        Topic::Sequenced,
        Topic::Directory,
        Topic::Push,
        Topic::Presence,
    ] {
        let name = settings.topic_name(topic);
        for partition in partitions_of(&probe, name, METADATA_TIMEOUT)? {
            let (low, high) = probe.fetch_watermarks(name, partition, METADATA_TIMEOUT)?;
            if topic != Topic::Sequenced {
                assignment.add_partition_offset(name, partition, Offset::Offset(high))?;
                continue;
            }
            let mut query = TopicPartitionList::new();
            query.add_partition_offset(name, partition, Offset::Offset(since_ms))?;
            let found = probe.offsets_for_times(query, METADATA_TIMEOUT)?;
            let start = match found.find_partition(name, partition).map(|p| p.offset()) {
                Some(Offset::Offset(at)) => at.clamp(low, high),
                _ => high,
            };
            assignment.add_partition_offset(name, partition, Offset::Offset(start))?;
            let index = usize::try_from(partition).unwrap_or(usize::MAX);
            if ends.len() <= index {
                ends.resize(index + 1, 0);
                starts.resize(index + 1, 0);
            }
            ends[index] = high;
            starts[index] = start;
        }
    }
    Ok(Start {
        assignment,
        sequenced_ends: ends,
        sequenced_starts: starts,
    })
}
