//! `rill_persist_consumer_lag` against a real broker: the records past the
//! group's committed offsets, per topic, whoever commits them.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use rill_persist::PersistSettings;
use rill_persist::lag::{self, LagProbe};
use rill_persist::metrics::PersistMetrics;
use rill_runtime::shutdown::CancellationToken;
use rill_testkit::broker::Broker;

/// Waits until `topic`'s lag reads `want` (the probe runs every 100 ms).
async fn lag_becomes(metrics: &PersistMetrics, topic: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = metrics.consumer_lag(topic.to_owned()).get();
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}: lag {now}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_what_the_group_has_not_committed() {
    let broker = Broker::start().await;
    let settings = PersistSettings {
        kafka: broker.kafka_settings(),
        group_id: broker.group_id("persist"),
        consumer_lag_interval_ms: Duration::from_millis(100),
        ..PersistSettings::default()
    };
    let topic = settings.kafka.sequenced_topic.clone();
    let producer = rill_runtime::kafka::producer(&settings.kafka, "lag-test").expect("producer");
    for n in 0..5 {
        let payload = format!("record {n}");
        let record = FutureRecord::<str, _>::to(&topic)
            .partition(1)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("produced");
    }

    let metrics = Arc::new(PersistMetrics::default());
    let probe = LagProbe::new(&settings, lag::topics(&settings), metrics.clone()).expect("probe");
    let shutdown = CancellationToken::new();
    let probing = tokio::spawn(probe.run(shutdown.clone()));

    // Nothing committed: the group starts from the earliest record.
    lag_becomes(&metrics, &topic, 5).await;
    lag_becomes(&metrics, &settings.kafka.directory_topic, 0).await;

    // The group commits 3 of the 5 (as persist does after a write).
    let group: BaseConsumer =
        rill_runtime::kafka::group_consumer_config(&settings.kafka, &settings.group_id)
            .create()
            .expect("group client");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 1, Offset::Offset(3))
        .expect("offset");
    group.commit(&offsets, CommitMode::Sync).expect("commit");
    lag_becomes(&metrics, &topic, 2).await;

    shutdown.cancel();
    probing.await.expect("the probe stops on shutdown");
}
