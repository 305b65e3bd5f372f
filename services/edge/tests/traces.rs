//! Traces end to end, read off a real OpenTelemetry receiver
//! (`rill_testkit::otlp`: OTLP/HTTP, the protobuf spans decoded): one
//! message is one trace from its send on one edge through the sequencer to
//! its delivery on every edge, and persist's write links to it; and every
//! record the api and the edges write carries the trace context of a span
//! that was exported.
//!
//! The edges are processes (their spans say which edge: the resource's
//! `service.instance.id`); the api, the sequencer and persist run in the
//! test process, whose telemetry exports to the same receiver (service
//! `rill-test`; they are told apart by their spans' names).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use rill_runtime::KafkaSettings;
use rill_runtime::telemetry::Telemetry;
use rill_runtime::trace_context::{TRACEPARENT, is_valid_traceparent};
use rill_testkit::otlp::{OtlpReceiver, ReceivedSpan, describe};
use rill_testkit::service::ServiceProcess;
use rill_testkit::{Client, Stack, auth_env};
use serde_json::{Value, json};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_edge");

/// Generous: spans arrive within a few hundred ms (every process exports
/// every 100 ms); a busy machine may take longer, a broken trace never
/// arrives.
const DEADLINE: Duration = Duration::from_secs(30);

/// The shared receiver, with this process's telemetry exporting to it, and
/// a stack (api, sequencer, persist, one in-process edge) on it.
async fn traced_stack() -> (Stack, &'static OtlpReceiver) {
    let receiver = OtlpReceiver::shared();
    Telemetry::init_for_tests_exporting_to(&receiver.endpoint());
    (Stack::start(1).await, receiver)
}

/// An edge process named `name` on the stack, exporting to `receiver`.
fn edge_process(stack: &Stack, name: &str, receiver: &OtlpReceiver) -> ServiceProcess {
    let mut env = stack.broker.env();
    env.extend(stack.store.env());
    env.extend([
        ("RILL_NODE_ID", name.to_owned()),
        ("RILL_REDIS__URLS", stack.redis.url()),
    ]);
    env.extend(auth_env());
    env.extend(receiver.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start(Path::new(BINARY), &env)
}

/// A logged-in client of `user` on the edge at `url`.
async fn client(url: &str, user: Uuid) -> Client {
    let client = Client::new(url);
    client.login(user).await;
    client
}

/// Sends `body` to `room` through `client`; the message's id.
async fn send(client: &Client, room: Uuid, body: &str) -> String {
    let response = client
        .post_json(&format!("/live/{room}/messages"), &json!({ "body": body }))
        .await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("json");
    reply["id"].as_str().expect("an id").to_owned()
}

/// Whether `span` is `name` from the edge process `edge`.
fn on_edge(span: &ReceivedSpan, edge: &str, name: &str) -> bool {
    span.service == "rill-edge" && span.instance == edge && span.name == name
}

/// The spans from `span` up to its trace's root, through the parents the
/// receiver has (`span` first).
fn ancestry(span: &ReceivedSpan, spans: &[ReceivedSpan]) -> Vec<ReceivedSpan> {
    let by_id: HashMap<(&str, &str), &ReceivedSpan> = spans
        .iter()
        .map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s))
        .collect();
    let mut chain = vec![span.clone()];
    while let Some(parent) = chain.last().and_then(|s| {
        let parent = s.parent_span_id.as_deref()?;
        by_id.get(&(s.trace_id.as_str(), parent))
    }) {
        chain.push((*parent).clone());
    }
    chain
}

/// Asserts that `ancestor` is `span`'s ancestor (same trace, on its chain
/// of parents).
fn assert_descends(span: &ReceivedSpan, ancestor: &ReceivedSpan, spans: &[ReceivedSpan]) {
    let chain = ancestry(span, spans);
    assert!(
        chain[1..].iter().any(|s| s == ancestor),
        "{:?} of {}/{} does not descend from {:?} of {}/{}; its ancestry:\n{}",
        span.name,
        span.service,
        span.instance,
        ancestor.name,
        ancestor.service,
        ancestor.instance,
        describe(&chain)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_from_its_send_to_every_delivery() {
    let (stack, receiver) = traced_stack().await;
    let edge_a = edge_process(&stack, "edge-a", receiver);
    let edge_b = edge_process(&stack, "edge-b", receiver);
    let room = stack.create_profile("Room").await;
    let ada = stack.member_of(&[room]).await;
    let grace = stack.member_of(&[room]).await;
    let sender = client(&edge_a.url(), ada).await;
    let reader = client(&edge_b.url(), grace).await;
    let mut ws = reader.ws(room).await;
    ws.next_of_type("ready").await;

    let id = send(&sender, room, "follow me").await;
    let delivered = ws.next_of_type("message").await;
    assert_eq!(delivered["id"], id.as_str(), "Grace gets it on edge B");

    let of_message = |span: &ReceivedSpan| span.attribute("message_id") == Some(id.as_str());
    let sent = receiver
        .wait_for_span("'send message' on edge-a", DEADLINE, |s| {
            on_edge(s, "edge-a", "send message") && of_message(s)
        })
        .await;
    let sequenced = receiver
        .wait_for_span("'sequence message' from the sequencer", DEADLINE, |s| {
            s.name == "sequence message" && of_message(s)
        })
        .await;
    let on_b = receiver
        .wait_for_span("'deliver message' on edge-b", DEADLINE, |s| {
            on_edge(s, "edge-b", "deliver message") && of_message(s)
        })
        .await;
    let on_a = receiver
        .wait_for_span("'deliver message' on edge-a", DEADLINE, |s| {
            on_edge(s, "edge-a", "deliver message") && of_message(s)
        })
        .await;
    let written = receiver
        .wait_for_span(
            "'write batch' of persist linked to the message",
            DEADLINE,
            |s| s.name == "write batch" && s.links_to(&sequenced),
        )
        .await;

    let spans = receiver.spans();
    for span in [&sequenced, &on_b, &on_a] {
        assert_eq!(
            span.trace_id,
            sent.trace_id,
            "one trace id:\n{}",
            describe(&spans)
        );
    }
    assert_descends(&sequenced, &sent, &spans);
    assert_descends(&on_b, &sequenced, &spans);
    assert_descends(&on_b, &sent, &spans);
    assert_descends(&on_a, &sent, &spans);
    assert_eq!(
        on_b.attribute("sessions"),
        Some("1"),
        "edge B delivered it to Grace's session"
    );
    assert_eq!(
        on_a.attribute("sessions"),
        Some("0"),
        "nobody reads the room on edge A"
    );
    // Persist's write is a span of its own (a batch holds many traces),
    // linked to the message's place in its trace.
    assert_eq!(written.service, "rill-test");
    assert!(
        written
            .attribute("messages")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1),
        "{written:?}"
    );
}

/// The records on `topics` (each read from its beginning) until each has
/// at least its count.
fn read_records(settings: &KafkaSettings, topics: &[(&str, usize)]) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = rill_runtime::kafka::tail_consumer_config(settings, "test-reader")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for (topic, _) in topics {
        for partition in
            rill_runtime::kafka::partitions_of(&consumer, topic, Duration::from_secs(10))
                .expect("partitions")
        {
            list.add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&list).expect("assign");
    let mut records: Vec<OwnedMessage> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let short = |records: &[OwnedMessage]| {
        topics
            .iter()
            .filter(|(topic, at_least)| {
                records.iter().filter(|r| r.topic() == *topic).count() < *at_least
            })
            .map(|(topic, at_least)| format!("{topic} (wanted {at_least})"))
            .collect::<Vec<_>>()
    };
    while !short(&records).is_empty() {
        assert!(
            Instant::now() < deadline,
            "too few records on {:?} after {DEADLINE:?}",
            short(&records)
        );
        if let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) {
            records.push(record.detach());
        }
    }
    records
}

/// A record's `traceparent` as (trace id, the id of the span that wrote it).
fn traceparent(record: &OwnedMessage) -> (String, String) {
    let value = record
        .headers()
        .and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == TRACEPARENT)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "a record on {} without a traceparent: {:?}",
                record.topic(),
                record.headers()
            )
        });
    assert!(is_valid_traceparent(&value), "{value}");
    let parts: Vec<&str> = value.split('-').collect();
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_rill_writes_carries_the_trace_of_an_exported_span() {
    let (stack, receiver) = traced_stack().await;
    let edge_a = edge_process(&stack, "edge-a", receiver);
    let edge_b = edge_process(&stack, "edge-b", receiver);
    // Directory records: the profile, two users, two memberships.
    let room = stack.create_profile("Room").await;
    let ada = stack.member_of(&[room]).await;
    let grace = stack.member_of(&[room]).await;
    // Presence records: a join from each edge.
    let mut ada_ws = client(&edge_a.url(), ada).await.ws(room).await;
    ada_ws.next_of_type("ready").await;
    let mut grace_ws = client(&edge_b.url(), grace).await.ws(room).await;
    grace_ws.next_of_type("ready").await;
    // A push record.
    let pushed = stack
        .server()
        .post_json(
            &format!("/api/profiles/{room}/publish"),
            &json!({"event": "notice", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(pushed.status(), 202);
    grace_ws.next_of_type("push").await;
    // A message record, and its sequenced copy.
    send(&client(&edge_a.url(), ada).await, room, "hello").await;
    grace_ws.next_of_type("message").await;

    let settings = stack.broker.kafka_settings();
    let writers: BTreeMap<String, (&str, &str)> = [
        (
            &settings.directory_topic,
            ("rill-test", "publish directory changes"),
        ),
        (&settings.push_topic, ("rill-test", "publish push")),
        (&settings.presence_topic, ("rill-edge", "publish presence")),
        (&settings.message_topic, ("rill-edge", "send message")),
        (&settings.sequenced_topic, ("rill-test", "sequence message")),
    ]
    .into_iter()
    .map(|(topic, writer)| (topic.clone(), writer))
    .collect();
    let wanted = [
        (settings.directory_topic.clone(), 5),
        (settings.push_topic.clone(), 1),
        (settings.presence_topic.clone(), 2),
        (settings.message_topic.clone(), 1),
        (settings.sequenced_topic.clone(), 1),
    ];
    let records = tokio::task::spawn_blocking(move || {
        let wanted: Vec<(&str, usize)> = wanted.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        read_records(&settings, &wanted)
    })
    .await
    .expect("reader thread");

    // Each record's traceparent names a span that was exported, by the
    // service that wrote the record.
    let mut spans_of_topic: BTreeMap<&str, Vec<ReceivedSpan>> = BTreeMap::new();
    for record in &records {
        let (trace_id, span_id) = traceparent(record);
        let (service, name) = writers[record.topic()];
        let span = receiver
            .wait_for_span(
                &format!(
                    "{span_id} of trace {trace_id} (a record on {})",
                    record.topic()
                ),
                DEADLINE,
                |s| s.trace_id == trace_id && s.span_id == span_id,
            )
            .await;
        assert_eq!(
            (span.service.as_str(), span.name.as_str()),
            (service, name),
            "the span that wrote a record on {}",
            record.topic()
        );
        spans_of_topic.entry(record.topic()).or_default().push(span);
    }
    let presence = &spans_of_topic[stack.broker.kafka_settings().presence_topic.as_str()];
    let mut edges: Vec<&str> = presence.iter().map(|s| s.instance.as_str()).collect();
    edges.sort();
    edges.dedup();
    assert_eq!(edges, ["edge-a", "edge-b"], "a join from each edge");

    // The push's trace goes on to its delivery on edge B.
    let push = &spans_of_topic[stack.broker.kafka_settings().push_topic.as_str()][0];
    let delivered = receiver
        .wait_for_span("'deliver push' on edge-b", DEADLINE, |s| {
            on_edge(s, "edge-b", "deliver push") && s.trace_id == push.trace_id
        })
        .await;
    assert_descends(&delivered, push, &receiver.spans());
    assert_eq!(delivered.attribute("sessions"), Some("1"));

    // Persist's writes link to the api's directory publishes.
    let directory = &spans_of_topic[stack.broker.kafka_settings().directory_topic.as_str()];
    for publish in directory {
        receiver
            .wait_for_span(
                &format!("'write batch' linked to {}", publish.span_id),
                DEADLINE,
                |s| s.name == "write batch" && s.links_to(publish),
            )
            .await;
    }
}
