//! What the edge writes to Kafka, read off the real broker: the record's
//! key, its protobuf payload, and the W3C trace context in its headers.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use rill_domain::ChatMessage;
use rill_runtime::trace_context::{TRACEPARENT, is_valid_traceparent};
use rill_testkit::Stack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_is_a_keyed_protobuf_record_with_a_traceparent() {
    let stack = Stack::start(1).await;
    let profile = stack.create_profile("Room").await;
    let user = stack.member_of(&[profile]).await;
    let client = stack.client();
    client.login(user).await;
    let response = client
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "traced"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.expect("json");

    let settings = stack.broker.kafka_settings();
    let topic = settings.message_topic.clone();
    let record = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            rill_runtime::kafka::tail_consumer_config(&settings, "test-reader")
                .create()
                .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in rill_runtime::kafka::partitions_of(&consumer, &topic, Duration::from_secs(5))
            .expect("partitions")
        {
            list.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) {
                return Some(record.detach());
            }
        }
        None
    })
    .await
    .expect("reader thread")
    .expect("the record is on the topic");

    assert_eq!(
        record.key(),
        Some(user.to_string().as_bytes()),
        "keyed by the sender"
    );
    let message = ChatMessage::decode(record.payload().expect("payload"), 4096).expect("protobuf");
    assert_eq!(message.id.to_string(), reply["id"].as_str().expect("id"));
    assert_eq!(message.body.as_str(), "traced");
    assert_eq!(message.profile_id.to_string(), profile.to_string());
    assert_eq!(message.edge_id, "edge-1");

    let headers = record.headers().expect("headers");
    let traceparent = headers
        .iter()
        .find(|h| h.key == TRACEPARENT)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("a traceparent header");
    assert!(is_valid_traceparent(&traceparent), "{traceparent}");
}
