//! Apache Kafka for the tests.
//!
//! One broker serves a whole test run: `scripts/test.sh` starts it
//! (`scripts/kafka/run.sh`) and names it in `RILL_TEST_KAFKA`, since a JVM
//! per test would not fit two cores. Each test gets topics and consumer
//! groups of its own, under a random prefix, so that no test sees another's
//! records; its topics are deleted when its [`Broker`] drops.
//!
//! A test that stops or restarts the broker starts one of its own
//! ([`Broker::dedicated`]), a child process with its own data folder; so
//! does a test of the secured link ([`Broker::dedicated_sasl_ssl`]: TLS
//! with the test's certificates and a SCRAM-SHA-512 user).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rill_runtime::settings::SecurityProtocol;
use rill_runtime::{KafkaSettings, Secret};

use crate::certs::{KEYSTORE_PASSWORD, TestCerts};
use crate::process::{ChildGuard, free_addr};
use crate::tools;

/// Partitions of each topic in tests: more than one, so that keying and
/// reading every partition are exercised.
pub const TEST_PARTITIONS: i32 = 4;

/// How long a broker of a test's own may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Broker {
    pub addr: SocketAddr,
    /// Starts every topic and group name of this test.
    prefix: String,
    own: Option<OwnBroker>,
    /// How clients reach it when its only listener is SASL_SSL.
    secured: Option<Secured>,
}

/// The client side of a broker that speaks only SASL_SSL.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The CA (PEM) that signed the broker's certificate.
    pub ca_file: String,
    pub username: String,
    pub password: Secret,
}

/// A broker process that belongs to one test.
#[derive(Debug)]
struct OwnBroker {
    process: Option<ChildGuard>,
    data: PathBuf,
    controller: SocketAddr,
}

impl Broker {
    /// Topics of this test's own on the test run's broker.
    pub async fn start() -> Self {
        let addr = std::env::var("RILL_TEST_KAFKA")
            .ok()
            .and_then(|addr| addr.parse().ok())
            .expect(
                "RILL_TEST_KAFKA must name the test run's Kafka broker (127.0.0.1:PORT): \
                 run the tests with scripts/test.sh, which starts one",
            );
        let broker = Self {
            addr,
            prefix: new_prefix(),
            own: None,
            secured: None,
        };
        broker.create_topics().await;
        broker
    }

    /// A broker of this test's own, which it may stop and restart.
    pub async fn dedicated() -> Self {
        Self::dedicated_with(None).await
    }

    /// A broker of this test's own whose only client listener is SASL_SSL:
    /// TLS with the server certificate of `certs`, and one SCRAM-SHA-512
    /// user, `username`, which the broker also uses to reach itself (its
    /// controller listener stays in the clear, on 127.0.0.1).
    pub async fn dedicated_sasl_ssl(certs: &TestCerts, username: &str, password: &str) -> Self {
        let secured = Secured {
            ca_file: certs.ca().display().to_string(),
            username: username.to_owned(),
            password: Secret::new(password),
        };
        Self::dedicated_with(Some((secured, certs))).await
    }

    async fn dedicated_with(secured: Option<(Secured, &TestCerts)>) -> Self {
        let data = std::env::temp_dir().join(format!("rill-test-kafka-{}", uuid::Uuid::new_v4()));
        if let Some((secured, certs)) = &secured {
            std::fs::create_dir_all(&data).expect("the broker's folder");
            let properties = sasl_ssl_properties(secured, certs);
            std::fs::write(data.join("sasl_ssl.properties"), properties)
                .expect("write the broker's SASL_SSL properties");
        }
        let own = OwnBroker {
            process: None,
            data,
            controller: free_addr(),
        };
        let mut broker = Self {
            addr: free_addr(),
            prefix: new_prefix(),
            own: Some(own),
            secured: secured.map(|(secured, _)| secured),
        };
        broker.restart().await;
        broker.create_topics().await;
        broker
    }

    /// Settings that point at this broker and this test's topics.
    pub fn kafka_settings(&self) -> KafkaSettings {
        let defaults = KafkaSettings::default();
        let topic = |name: &str| format!("{}.{name}", self.prefix);
        KafkaSettings {
            brokers: self.addr.to_string(),
            message_topic: topic(&defaults.message_topic),
            sequenced_topic: topic(&defaults.sequenced_topic),
            directory_topic: topic(&defaults.directory_topic),
            push_topic: topic(&defaults.push_topic),
            presence_topic: topic(&defaults.presence_topic),
            partitions: TEST_PARTITIONS,
            ..self.client_security()
        }
    }

    /// The default settings with this broker's security: SASL_SSL with its
    /// CA and user when it is secured, else none.
    fn client_security(&self) -> KafkaSettings {
        match &self.secured {
            Some(secured) => KafkaSettings {
                security_protocol: SecurityProtocol::SaslSsl,
                ssl_ca_file: secured.ca_file.clone(),
                sasl_username: secured.username.clone(),
                sasl_password: secured.password.clone(),
                ..KafkaSettings::default()
            },
            None => KafkaSettings::default(),
        }
    }

    /// A consumer group name of this test's own.
    pub fn group_id(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The same settings as environment variables, for service processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let settings = self.kafka_settings();
        vec![
            ("RILL_KAFKA__BROKERS", settings.brokers),
            ("RILL_KAFKA__MESSAGE_TOPIC", settings.message_topic),
            ("RILL_KAFKA__SEQUENCED_TOPIC", settings.sequenced_topic),
            ("RILL_KAFKA__DIRECTORY_TOPIC", settings.directory_topic),
            ("RILL_KAFKA__PUSH_TOPIC", settings.push_topic),
            ("RILL_KAFKA__PRESENCE_TOPIC", settings.presence_topic),
            ("RILL_KAFKA__PARTITIONS", settings.partitions.to_string()),
            (
                "RILL_KAFKA__SECURITY_PROTOCOL",
                settings.security_protocol.as_librdkafka().to_owned(),
            ),
            ("RILL_KAFKA__SSL_CA_FILE", settings.ssl_ca_file),
            ("RILL_KAFKA__SASL_MECHANISM", settings.sasl_mechanism),
            ("RILL_KAFKA__SASL_USERNAME", settings.sasl_username),
            (
                "RILL_KAFKA__SASL_PASSWORD",
                settings.sasl_password.expose().to_owned(),
            ),
        ]
    }

    /// Stops a broker of the test's own as a crash would (SIGKILL); its data
    /// stays for [`Broker::restart`].
    pub fn kill(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("only a dedicated broker can be killed");
        if let Some(mut process) = own.process.take() {
            process.kill();
        }
    }

    /// Stops a broker of the test's own cleanly (SIGTERM).
    pub fn stop(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("only a dedicated broker can be stopped");
        if let Some(mut process) = own.process.take() {
            process.terminate(Duration::from_secs(60));
        }
    }

    /// Starts a broker of the test's own (again, with its data, on the same
    /// ports) and waits until it serves clients.
    pub async fn restart(&mut self) {
        let addr = self.addr;
        let own = self
            .own
            .as_mut()
            .expect("only a dedicated broker can be restarted");
        assert!(own.process.is_none(), "the broker is running");
        let mut command = Command::new(tools::repo_root().join("scripts/kafka/run.sh"));
        command
            .arg(&own.data)
            .arg(addr.port().to_string())
            .arg(own.controller.port().to_string());
        if let Some(secured) = &self.secured {
            command
                .env(
                    "RILL_KAFKA_EXTRA_PROPERTIES",
                    own.data.join("sasl_ssl.properties"),
                )
                .env(
                    "RILL_KAFKA_SCRAM_USERS",
                    format!(
                        "SCRAM-SHA-512=[name={},password={}]",
                        secured.username,
                        secured.password.expose()
                    ),
                );
        }
        let mut process = ChildGuard::spawn("kafka", &mut command);
        process.wait_for_port(addr, START_TIMEOUT);
        own.process = Some(process);
        self.wait_until_serving().await;
    }

    /// Waits until the broker answers metadata requests (it accepts
    /// connections a little before its controller is elected).
    async fn wait_until_serving(&self) {
        let settings = self.kafka_settings();
        let deadline = Instant::now() + START_TIMEOUT;
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer =
                rill_runtime::kafka::tail_consumer_config(&settings, "rill-testkit")
                    .create()
                    .expect("a Kafka client");
            loop {
                use rdkafka::consumer::Consumer as _;
                match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                    Ok(metadata) if !metadata.brokers().is_empty() => return,
                    result => assert!(
                        Instant::now() < deadline,
                        "the test's broker does not serve: {:?}",
                        result.err()
                    ),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .expect("wait for the broker");
    }

    async fn create_topics(&self) {
        rill_runtime::kafka::create_topics(&self.kafka_settings())
            .await
            .unwrap_or_else(|e| panic!("creating topics on {}: {e}", self.addr));
    }

    /// The broker's log, when it is the test's own.
    pub fn log(&self) -> String {
        self.own
            .as_ref()
            .and_then(|own| own.process.as_ref())
            .map(ChildGuard::log)
            .unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        match self.own.take() {
            Some(mut own) => {
                drop(own.process.take());
                let _ = std::fs::remove_dir_all(&own.data);
            }
            None => delete_topics(&self.kafka_settings()),
        }
    }
}

/// Broker properties (appended to scripts/kafka/server.properties by
/// scripts/kafka/run.sh) for a node whose clients and the node itself
/// speak SASL_SSL with SCRAM-SHA-512, on the same port.
fn sasl_ssl_properties(secured: &Secured, certs: &TestCerts) -> String {
    format!(
        "listeners=SASL_SSL://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@\n\
         advertised.listeners=SASL_SSL://127.0.0.1:@PORT@\n\
         inter.broker.listener.name=SASL_SSL\n\
         listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
         sasl.enabled.mechanisms=SCRAM-SHA-512\n\
         sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n\
         listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
         org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"{user}\" password=\"{password}\";\n\
         ssl.keystore.type=PKCS12\n\
         ssl.keystore.location={keystore}\n\
         ssl.keystore.password={KEYSTORE_PASSWORD}\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={ca}\n",
        user = secured.username,
        password = secured.password.expose(),
        keystore = certs.keystore().display(),
        ca = certs.ca().display(),
    )
}

/// A prefix for one test's topics and groups: `t` and 12 random hex digits.
fn new_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// Asks the broker to delete the test's topics and does not wait for it to
/// finish (the test is over; the run's broker goes when the run ends).
fn delete_topics(settings: &KafkaSettings) {
    let settings = settings.clone();
    let deleted = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let admin: AdminClient<DefaultClientContext> =
            rill_runtime::kafka::client_config(&settings)
                .create()
                .ok()?;
        let topics = rill_runtime::Topic::ALL.map(|topic| settings.topic_name(topic));
        let options = AdminOptions::new()
            .request_timeout(Some(Duration::from_secs(5)))
            .operation_timeout(Some(Duration::ZERO));
        runtime
            .block_on(admin.delete_topics(&topics, &options))
            .ok()
    });
    let _ = deleted.join();
}
