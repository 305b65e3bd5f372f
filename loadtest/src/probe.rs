//! The broker probe: produce to and consume from a topic of its own at the
//! run's rate, with the services' Kafka settings (acks=all, idempotence,
//! linger 1 ms, the services' fetch.wait.max.ms, Nagle off), so that
//! the broker's own produce-to-consume latency is visible beside Rill's,
//! over the whole run and per interval (by send time, as the sessions').

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::intervals::{IntervalPlan, IntervalSummary, Intervals};
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
    /// `end_to_end` per interval of the probe's own sending, from its
    /// first produce.
    pub end_to_end_by_interval: Vec<IntervalSummary>,
    pub produce_ack: Option<Summary>,
    #[serde(skip)]
    pub histogram: Option<Latency>,
    #[serde(skip)]
    pub intervals: Option<Intervals>,
}

/// What the consumer records: the whole run, and per interval once the
/// producing starts.
#[derive(Debug, Default)]
struct Received {
    latency: Latency,
    intervals: Option<Intervals>,
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
    interval: Duration,
) -> Result<ProbeReport, ProbeError> {
    // The services' base config (rill-runtime's kafka.rs): no Nagle delay,
    // and the link as the default settings have it (plaintext: the probe
    // is pointed at a local broker by address).
    let common = rill_runtime::kafka::client_config(&rill_runtime::KafkaSettings {
        brokers: brokers.to_owned(),
        ..rill_runtime::KafkaSettings::default()
    });
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

    let received = Arc::new(Mutex::new(Received::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer_task = {
        let (record, stop) = (received.clone(), stop.clone());
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
                    let latency_us = now_us().saturating_sub(sent);
                    let mut record = record.lock().expect("probe lock");
                    record.latency.record_us(latency_us);
                    if let Some(intervals) = &mut record.intervals {
                        intervals.record(sent, latency_us);
                    }
                    received += 1;
                }
            }
            received
        })
    };
    // Let the consumer find the end of each partition before producing.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ack = Arc::new(Mutex::new(Latency::default()));
    received.lock().expect("probe lock").intervals = Some(Intervals::new(IntervalPlan::new(
        now_us(),
        duration.as_secs_f64(),
        interval.as_secs_f64(),
    )));
    let start = Instant::now();
    let mut sent = 0u64;
    // The acks awaited; finished ones are reaped as the sending goes, so
    // a long run does not keep one finished task per message.
    let mut pending = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while rate > 0.0 && start.elapsed() < duration {
        tick.tick().await;
        while pending.try_join_next().is_some() {}
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
                pending.spawn(async move {
                    if let Ok(Ok(_)) = delivery.await {
                        ack.lock()
                            .expect("ack lock")
                            .record_us(send_at.elapsed().as_micros() as u64);
                    }
                });
            }
        }
    }
    while pending.join_next().await.is_some() {}
    tokio::time::sleep(drain).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let received_count = consumer_task.await?;
    let Received { latency, intervals } =
        std::mem::take(&mut *received.lock().expect("probe lock"));
    let ack = ack.lock().expect("ack lock").clone();
    Ok(ProbeReport {
        topic: topic.to_owned(),
        fetch_wait_ms,
        sent,
        received: received_count,
        end_to_end: (!latency.is_empty()).then(|| latency.summary()),
        end_to_end_by_interval: intervals
            .as_ref()
            .filter(|i| !i.is_empty())
            .map(Intervals::summaries)
            .unwrap_or_default(),
        produce_ack: (!ack.is_empty()).then(|| ack.summary()),
        histogram: Some(latency),
        intervals,
    })
}
