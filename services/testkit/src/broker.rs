//! A real Kafka-protocol broker (tansu, in-memory storage) with Rill's
//! topics created.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use rill_runtime::KafkaSettings;

use crate::process::{ChildGuard, free_addr};
use crate::tools;

/// Partitions of each topic in tests: more than one, so that keying and
/// reading every partition are exercised.
pub const TEST_PARTITIONS: i32 = 4;

#[derive(Debug)]
pub struct Broker {
    pub addr: SocketAddr,
    process: ChildGuard,
}

impl Broker {
    /// Starts a broker on a free port and creates the topics.
    pub async fn start() -> Self {
        let addr = free_addr();
        let url = format!("tcp://{addr}");
        let mut command = Command::new(tools::tansu());
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu reads these from the environment too: keep them out.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY");
        let mut process = ChildGuard::spawn("tansu", &mut command);
        process.wait_for_port(addr, Duration::from_secs(20));
        let broker = Self { addr, process };
        rill_runtime::kafka::create_topics(&broker.kafka_settings())
            .await
            .unwrap_or_else(|e| panic!("creating topics: {e}\n{}", broker.process.log_tail()));
        broker
    }

    /// Settings that point at this broker, as the local stack sets them.
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.addr.to_string(),
            partitions: TEST_PARTITIONS,
            idempotence: false,
            ..KafkaSettings::default()
        }
    }
}
