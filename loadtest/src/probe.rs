//! The broker probe: produce to and consume from a topic of its own at the
//! run's rate, with the services' Kafka settings (acks=all, idempotence,
//! linger 1 ms, the services' fetch.wait.max.ms, Nagle off), so that
//! the broker's own produce-to-consume latency is visible beside Rill's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::stats::{Latency, Summary, now_us};

/// Partitions of the probe topic: as many as the services' topics.
const PARTITIONS: i32 = 8;

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub topic: String,
    pub fetch_wait_ms: u32,
    pub sent: u64,
    pub received: u64,
    pub end_to_end: Option<Summary>,
    pub produce_ack: Option<Summary>,
    #[serde(skip)]
    pub histogram: Option<Latency>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("probe consumer: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub async fn run(
    brokers: &str,
    topic: &str,
    fetch_wait_ms: u32,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> Result<ProbeReport, ProbeError> {
    let mut common = ClientConfig::new();
    // As the services' base config (rill-runtime's kafka.rs): librdkafka
    // leaves Nagle on, which delays small produces and fetches.
    common
        .set("bootstrap.servers", brokers)
        .set("socket.nagle.disable", "true");
    let admin: AdminClient<DefaultClientContext> = common.create()?;
    // Already there from an earlier run: fine.
    let _ = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;

    let consumer: BaseConsumer = common
        .clone()
        .set("group.id", "rill-loadtest-probe-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    let producer: FutureProducer = common
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "10000")
        .create()?;

    let latency = Arc::new(Mutex::new(Latency::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer_task = {
        let (latency, stop) = (latency.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut received = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let sent: Option<u64> = message
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse().ok());
                if let Some(sent) = sent {
                    latency
                        .lock()
                        .expect("probe lock")
                        .record_us(now_us().saturating_sub(sent));
                    received += 1;
                }
            }
            received
        })
    };
    // Let the consumer find the end of each partition before producing.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ack = Arc::new(Mutex::new(Latency::default()));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pending = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while rate > 0.0 && start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let key = sent.to_string();
            let payload = now_us().to_string();
            let send_at = Instant::now();
            let delivery =
                producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload));
            sent += 1;
            let ack = ack.clone();
            if let Ok(delivery) = delivery {
                pending.push(tokio::spawn(async move {
                    if let Ok(Ok(_)) = delivery.await {
                        ack.lock()
                            .expect("ack lock")
                            .record_us(send_at.elapsed().as_micros() as u64);
                    }
                }));
            }
        }
    }
    for task in pending {
        let _ = task.await;
    }
    tokio::time::sleep(drain).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let received = consumer_task.await?;
    let latency = latency.lock().expect("probe lock").clone();
    let ack = ack.lock().expect("ack lock").clone();
    Ok(ProbeReport {
        topic: topic.to_owned(),
        fetch_wait_ms,
        sent,
        received,
        end_to_end: (!latency.is_empty()).then(|| latency.summary()),
        produce_ack: (!ack.is_empty()).then(|| ack.summary()),
        histogram: Some(latency),
    })
}
