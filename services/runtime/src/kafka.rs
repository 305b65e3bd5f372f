//! Kafka clients configured the one way every service uses them, and topic
//! creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::settings::{KafkaSettings, Topic};

/// What every client shares, and the start of every client's
/// configuration in Rill (services, tools and tests): the brokers, how the
/// link is protected (`kafka.security_protocol`: TLS checked against
/// `kafka.ssl_ca_file`, a SASL user), and no Nagle delay (librdkafka
/// leaves Nagle's algorithm on by default, which can hold a small request
/// back until the previous one is acknowledged).
///
/// librdkafka checks the broker's certificate and that it names the
/// broker's host (`ssl.endpoint.identification.algorithm=https`, its
/// default), and marks `sasl.password` sensitive: its logs never print it.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    let protocol = settings.security_protocol;
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("socket.nagle.disable", "true")
        .set("security.protocol", protocol.as_librdkafka());
    if protocol.uses_tls() && !settings.ssl_ca_file.is_empty() {
        config.set("ssl.ca.location", &settings.ssl_ca_file);
    }
    if protocol.uses_sasl() {
        config
            .set("sasl.mechanism", &settings.sasl_mechanism)
            .set("sasl.username", &settings.sasl_username)
            .set("sasl.password", settings.sasl_password.expose());
    }
    config
}

/// A producer that a client's send may wait on: `acks=all`, idempotence as
/// set, batches of at most `linger_ms`.
pub fn producer(settings: &KafkaSettings, client_id: &str) -> Result<FutureProducer, KafkaError> {
    producer_config(settings, client_id).create()
}

/// The configuration of [`producer`], for producers of another kind (the
/// sequencer's transactional one).
pub fn producer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("client.id", client_id)
        .set("acks", "all")
        .set("enable.idempotence", settings.idempotence.to_string())
        .set("linger.ms", settings.linger_ms.to_string())
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.as_millis().to_string(),
        );
    config
}

/// Most kilobytes of records a tail consumer prefetches (librdkafka's
/// `queued.max.messages.kbytes`, 64 MiB by default), over all its
/// partitions (one consumer queue): an edge's memory is bounded by its
/// settings, and this is part of it (docs/ARCHITECTURE.md).
pub const TAIL_PREFETCH_KBYTES: u32 = 16 * 1024;

/// Most bytes one fetch response of a tail consumer carries (librdkafka's
/// `fetch.max.bytes`, 50 MiB by default); one may be in flight per broker.
pub const TAIL_FETCH_MAX_BYTES: u32 = 8 * 1024 * 1024;

/// Configuration of a consumer that reads partitions it assigns itself,
/// outside any consumer group (every edge reads every partition). Its
/// buffers are bounded by [`TAIL_PREFETCH_KBYTES`] and
/// [`TAIL_FETCH_MAX_BYTES`].
pub fn tail_consumer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("client.id", client_id)
        // librdkafka wants a group id even for assigned partitions; nothing
        // is ever committed under it.
        .set("group.id", format!("{client_id}-unused"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        .set(
            "queued.max.messages.kbytes",
            TAIL_PREFETCH_KBYTES.to_string(),
        )
        .set("fetch.max.bytes", TAIL_FETCH_MAX_BYTES.to_string());
    config
}

/// Configuration of a member of consumer group `group_id` that commits its
/// offsets itself, after its work succeeded. It heartbeats three times per
/// session timeout, as Kafka advises.
pub fn group_consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = client_config(settings);
    let session = settings.group_session_timeout_ms;
    config
        .set("group.id", group_id)
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).to_string())
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

/// Creates Rill's topics, each with `settings.partitions` partitions of
/// `settings.replication_factor` copies and `min.insync.replicas` of
/// `settings.min_insync_replicas`. Topics that exist are left as they are
/// (their partitions, copies and configuration are not changed).
pub async fn create_topics(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let topics = Topic::ALL.map(|topic| settings.topic_name(topic));
    let min_insync = settings.min_insync_replicas.to_string();
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|name| {
            let replication = TopicReplication::Fixed(settings.replication_factor);
            NewTopic::new(name, settings.partitions, replication)
                .set("min.insync.replicas", &min_insync)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => {
                tracing::info!(
                    topic = %name,
                    partitions = settings.partitions,
                    replication_factor = settings.replication_factor,
                    min_insync_replicas = settings.min_insync_replicas,
                    "topic created"
                )
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic = %name, "topic exists")
            }
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    wait_for_topics(settings, &topics).await
}

/// Waits until every partition of every topic has a leader that answers,
/// so that clients started next can read and write them all. (The
/// metadata lists a new topic a little before its partitions' leaders
/// serve: reading a watermark then fails with "not leader".)
async fn wait_for_topics(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = tail_consumer_config(settings, "rill-admin").create()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let timeout = Duration::from_secs(2);
    for topic in topics {
        loop {
            let serving = partitions_of(&consumer, topic, timeout).and_then(|partitions| {
                partitions.into_iter().try_for_each(|partition| {
                    consumer
                        .fetch_watermarks(topic, partition, timeout)
                        .map(drop)
                })
            });
            match serving {
                Ok(()) => break,
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Whether a consumer's read error only reports the state of a broker
/// connection (lost, or every one down): librdkafka reconnects by itself
/// and goes on reading where it was, so the loop reads on at once. Such
/// errors are queued like records while the broker is away (a few every
/// reconnect attempt) and handed out one per read when it is back: a
/// read loop that waited a back-off after each of them (up to 5 s) went
/// on delivering minutes after a 20-second outage.
pub fn is_connection_event(err: &KafkaError) -> bool {
    matches!(
        err,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_events_are_told_from_other_read_errors() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(is_connection_event(&KafkaError::MessageConsumption(code)));
        }
        assert!(!is_connection_event(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
        assert!(!is_connection_event(&KafkaError::Canceled));
    }
}
