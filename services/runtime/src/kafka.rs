//! Kafka clients configured the one way every service uses them, topic
//! creation, and the guard against records seen twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::settings::KafkaSettings;

/// What every client shares: the brokers, and no Nagle delay (librdkafka
/// leaves Nagle's algorithm on by default, which can hold a small request
/// back until the previous one is acknowledged). Turning it off did not
/// change the ~40 ms produce acks seen at 100 messages/s with tansu
/// (docs/PERFORMANCE.md): their cause is still open.
fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("socket.nagle.disable", "true");
    config
}

/// A producer that a client's send may wait on: `acks=all`, idempotence as
/// set, batches of at most `linger_ms`.
pub fn producer(settings: &KafkaSettings, client_id: &str) -> Result<FutureProducer, KafkaError> {
    base_config(settings)
        .set("client.id", client_id)
        .set("acks", "all")
        .set("enable.idempotence", settings.idempotence.to_string())
        .set("linger.ms", settings.linger_ms.to_string())
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.to_string(),
        )
        .create()
}

/// Configuration of a consumer that reads partitions it assigns itself,
/// outside any consumer group (every edge reads every partition).
pub fn tail_consumer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("client.id", client_id)
        // librdkafka wants a group id even for assigned partitions; nothing
        // is ever committed under it.
        .set("group.id", format!("{client_id}-unused"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string());
    config
}

/// Configuration of a member of consumer group `group_id` that commits its
/// offsets itself, after its work succeeded.
pub fn group_consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string());
    config
}

/// The partition numbers of `topic`, from the broker's metadata.
pub fn partitions_of(
    consumer: &impl Consumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(partitions)
}

/// Creates the message, directory, push and presence topics, each with
/// `settings.partitions` partitions. Topics that exist are left as they are.
pub async fn create_topics(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()?;
    let topics = [
        &settings.message_topic,
        &settings.directory_topic,
        &settings.push_topic,
        &settings.presence_topic,
    ];
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|name| NewTopic::new(name, settings.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = settings.partitions, "topic created")
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic = %name, "topic exists")
            }
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    wait_for_topics(settings, &topics).await
}

/// Waits until the broker's metadata lists every topic, so that clients
/// started next find them.
async fn wait_for_topics(settings: &KafkaSettings, topics: &[&String]) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = tail_consumer_config(settings, "rill-admin").create()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for topic in topics {
        loop {
            match partitions_of(&consumer, topic, Duration::from_secs(2)) {
                Ok(_) => break,
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// How long a consumer keeps reading a partition again for records that a
/// later offset skipped, before it takes the gap as final. (A skipped
/// record of tansu 0.6 is readable a few milliseconds later.)
pub const GAP_WAIT: Duration = Duration::from_secs(2);

/// What to do with a record, by its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next record of its partition (or the first one seen): use it.
    Next,
    /// Seen already: drop it.
    Repeat,
    /// Offsets before it were skipped: drop it and read the partition again
    /// from `from`. tansu 0.6 can show a record before an earlier one from
    /// another producer is readable; the consumer has moved past that one.
    Gap { from: i64 },
    /// Offsets before it were skipped and did not come back within
    /// [`GAP_WAIT`]: use it. `skipped` records are lost (or never
    /// existed: compaction, transaction markers).
    GapAccepted { skipped: i64 },
}

/// Checks `record` with `guard` and, on a gap, makes `consumer` read its
/// partition again from the first skipped offset. The caller drops the
/// record unless this returns [`Seen::Next`] or [`Seen::GapAccepted`].
pub fn admit<C, K>(guard: &mut OffsetGuard, consumer: &K, record: &impl Message) -> Seen
where
    C: ConsumerContext,
    K: Consumer<C>,
{
    let (topic, partition, offset) = (record.topic(), record.partition(), record.offset());
    let seen = guard.check(topic, partition, offset);
    match seen {
        Seen::Gap { from } => {
            tracing::debug!(
                topic,
                partition,
                offset,
                from,
                "offsets skipped: reading again"
            );
            // Zero timeout: asynchronous; records fetched before the seek are
            // discarded by the client.
            if let Err(err) = consumer.seek(topic, partition, Offset::Offset(from), Duration::ZERO)
            {
                tracing::warn!(error = %err, topic, partition, from, "cannot read the partition again");
            }
        }
        Seen::GapAccepted { skipped } => {
            tracing::error!(
                topic,
                partition,
                offset,
                skipped,
                "skipped records never came back"
            );
        }
        Seen::Next | Seen::Repeat => {}
    }
    seen
}

/// Tracks each partition's last offset: drops repeats and finds gaps.
///
/// A consumer that starts at the end of a partition can receive a few
/// records twice: some brokers (tansu 0.6) answer "latest offset" with the
/// first offset of the last batch. Offsets within a partition only grow, so
/// a record whose offset is not above the last one seen is a repeat. And
/// they grow by one per record on Rill's topics (no compaction, no
/// transactions), so a larger step means records were skipped.
#[derive(Debug, Default)]
pub struct OffsetGuard {
    /// Last offset seen and since when records after a gap have been
    /// coming, by topic, then partition.
    last: HashMap<String, HashMap<i32, (i64, Option<Instant>)>>,
}

impl OffsetGuard {
    /// Called for every record: allocates only for a topic's first record.
    pub fn check(&mut self, topic: &str, partition: i32, offset: i64) -> Seen {
        self.check_at(topic, partition, offset, Instant::now)
    }

    /// `now` is read only on a gap: not a clock read per record.
    fn check_at(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        now: impl FnOnce() -> Instant,
    ) -> Seen {
        let partitions = match self.last.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.last.entry(topic.to_owned()).or_default(),
        };
        let Some((last, gap_since)) = partitions.get_mut(&partition) else {
            partitions.insert(partition, (offset, None));
            return Seen::Next;
        };
        if offset <= *last {
            return Seen::Repeat;
        }
        let skipped = offset - *last - 1;
        if skipped > 0 {
            let now = now();
            if now.duration_since(*gap_since.get_or_insert(now)) < GAP_WAIT {
                return Seen::Gap { from: *last + 1 };
            }
        }
        *last = offset;
        *gap_since = None;
        if skipped > 0 {
            Seen::GapAccepted { skipped }
        } else {
            Seen::Next
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_older_offsets_are_repeats() {
        let mut guard = OffsetGuard::default();
        assert_eq!(guard.check("t", 0, 5), Seen::Next);
        assert_eq!(guard.check("t", 0, 5), Seen::Repeat);
        assert_eq!(guard.check("t", 0, 4), Seen::Repeat);
        assert_eq!(guard.check("t", 0, 6), Seen::Next);
    }

    #[test]
    fn partitions_and_topics_are_independent() {
        let mut guard = OffsetGuard::default();
        assert_eq!(guard.check("t", 0, 5), Seen::Next);
        assert_eq!(guard.check("t", 1, 1), Seen::Next);
        assert_eq!(guard.check("u", 0, 1), Seen::Next);
        assert_eq!(guard.check("t", 1, 2), Seen::Next);
    }

    #[test]
    fn a_skipped_offset_is_read_again_then_the_records_go_on_in_order() {
        let mut guard = OffsetGuard::default();
        assert_eq!(guard.check("t", 0, 10), Seen::Next);
        // 11 not readable yet: 12 came first, then 13 already fetched.
        assert_eq!(guard.check("t", 0, 12), Seen::Gap { from: 11 });
        assert_eq!(guard.check("t", 0, 13), Seen::Gap { from: 11 });
        assert_eq!(guard.check("t", 0, 11), Seen::Next);
        assert_eq!(guard.check("t", 0, 12), Seen::Next);
        assert_eq!(guard.check("t", 0, 13), Seen::Next);
    }

    #[test]
    fn a_gap_that_stays_is_accepted_after_the_wait() {
        let mut guard = OffsetGuard::default();
        let t0 = Instant::now();
        assert_eq!(guard.check_at("t", 0, 10, || t0), Seen::Next);
        assert_eq!(guard.check_at("t", 0, 13, || t0), Seen::Gap { from: 11 });
        let almost = t0 + GAP_WAIT - Duration::from_millis(1);
        assert_eq!(
            guard.check_at("t", 0, 13, || almost),
            Seen::Gap { from: 11 }
        );
        let past = t0 + GAP_WAIT;
        assert_eq!(
            guard.check_at("t", 0, 13, || past),
            Seen::GapAccepted { skipped: 2 }
        );
        assert_eq!(guard.check_at("t", 0, 14, || past), Seen::Next);
        // The next gap gets its own wait.
        assert_eq!(guard.check_at("t", 0, 16, || past), Seen::Gap { from: 15 });
    }
}
