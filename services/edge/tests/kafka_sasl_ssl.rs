//! The link to Kafka over SASL_SSL (issue 16.4): a broker of the test's own
//! whose only client listener is SASL_SSL, with certificates the test
//! made and a SCRAM-SHA-512 user. The whole stack (edge, sequencer with
//! its transactions, persist, api) chats through it; a client with a
//! wrong password, one without TLS, and one that trusts another CA are
//! each refused (a wrong password or CA with librdkafka's error saying
//! why).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rill_runtime::settings::SecurityProtocol;
use rill_runtime::{KafkaSettings, Secret};
use rill_testkit::Stack;
use rill_testkit::broker::Broker;
use rill_testkit::certs::TestCerts;
use serde_json::{Value, json};

const USER: &str = "rill";
const PASSWORD: &str = "scram-test-password";

/// How long a refused client may take to say why, on a busy machine.
const REFUSAL: Duration = Duration::from_secs(30);

/// The errors librdkafka reported to a client (its error callback).
#[derive(Debug, Clone, Default)]
struct Reported(Arc<Mutex<Vec<String>>>);

impl ClientContext for Reported {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("errors")
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Reported {}

/// Asks the broker for metadata with `settings` (through the services' own
/// client configuration); asserts that it is refused and that librdkafka
/// reports an error containing `why` (all of them, when it does not).
async fn refused(settings: KafkaSettings, why: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let reported = Reported::default();
        let consumer: BaseConsumer<Reported> =
            rill_runtime::kafka::tail_consumer_config(&settings, "rill-test-refused")
                .create_with_context(reported.clone())
                .expect("a Kafka client");
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(3));
        assert!(
            metadata.as_ref().map_or(true, |m| m.brokers().is_empty()),
            "the broker answered a client it should refuse ({why})"
        );
        let deadline = Instant::now() + REFUSAL;
        loop {
            // Errors reach the context as the client is polled.
            let _ = consumer.poll(Duration::from_millis(100));
            let errors = reported.0.lock().expect("errors").clone();
            if let Some(found) = errors.iter().find(|e| e.contains(why)) {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no error saying {why:?} within {REFUSAL:?}; reported: {errors:#?}"
            );
        }
    })
    .await
    .expect("the refused client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_chats_over_sasl_ssl_and_other_clients_are_refused() {
    let certs = TestCerts::new();
    let broker = Broker::dedicated_sasl_ssl(&certs, USER, PASSWORD).await;
    let good = broker.kafka_settings();
    assert_eq!(good.security_protocol, SecurityProtocol::SaslSsl);

    let wrong_password = KafkaSettings {
        sasl_password: Secret::new("not-the-password"),
        ..good.clone()
    };
    let error = refused(wrong_password, "Authentication failed").await;
    assert!(error.contains("SCRAM-SHA-512"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");

    let without_tls = KafkaSettings {
        security_protocol: SecurityProtocol::SaslPlaintext,
        ssl_ca_file: String::new(),
        ..good.clone()
    };
    // A TLS listener hangs up on a client that does not speak TLS: the
    // error it gets says only that the broker is down (librdkafka's log
    // adds that security.protocol may be wrong).
    refused(without_tls, "All broker connections are down").await;
    let plaintext = KafkaSettings {
        security_protocol: SecurityProtocol::Plaintext,
        ssl_ca_file: String::new(),
        sasl_username: String::new(),
        sasl_password: Secret::default(),
        ..good.clone()
    };
    refused(plaintext, "All broker connections are down").await;

    let other_ca = KafkaSettings {
        ssl_ca_file: certs.other_ca().display().to_string(),
        ..good.clone()
    };
    refused(other_ca, "certificate verify failed").await;

    // Every service on the secured broker: a message sent on the edge is
    // sequenced (a transactional producer), delivered and stored.
    let stack = Stack::start_on_broker(broker, 1, |_| {}).await;
    let profile = stack.create_profile("Secured").await;
    let client = stack.client();
    client.login(stack.member_of(&[profile]).await).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;
    ws.send(&json!({"type": "send", "body": "over sasl_ssl", "ref": "s1"}))
        .await;
    let ack = ws.next_of_type("ack").await;
    let got = ws.next_of_type("message").await;
    assert_eq!(got["body"], "over sasl_ssl");
    assert_eq!(got["id"], ack["id"]);

    let history = format!("/api/profiles/{profile}/messages");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page: Value = stack
            .server()
            .get(&history)
            .await
            .json()
            .await
            .expect("json");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|m| m["id"] == ack["id"]) {
            break;
        }
        assert!(Instant::now() < deadline, "not stored within 60 s: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
