//! `rill-admin`: operator commands.
//!
//! - `rill-admin create-topics`: creates the Kafka topics named in the
//!   settings (`RILL_KAFKA__*`), with `kafka.partitions` partitions each.
//!   Topics that exist are left alone, so it is safe to run at every start.

use anyhow::{Context as _, bail};
use rill_runtime::KafkaSettings;
use rill_runtime::settings::ServiceSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdminSettings {
    kafka: KafkaSettings,
}

impl ServiceSettings for AdminSettings {
    fn validate(&self) -> Result<(), rill_runtime::SettingsError> {
        self.kafka.validate()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    match command.as_str() {
        "create-topics" => {
            let settings: AdminSettings = rill_runtime::settings::load()?;
            rill_runtime::kafka::create_topics(&settings.kafka)
                .await
                .with_context(|| format!("creating topics on {}", settings.kafka.brokers))?;
            let kafka = &settings.kafka;
            println!(
                "topics ready: {}, {}, {} ({} partitions)",
                kafka.message_topic, kafka.directory_topic, kafka.push_topic, kafka.partitions
            );
            Ok(())
        }
        _ => {
            bail!("usage: rill-admin create-topics   (settings from RILL_CONFIG and RILL_KAFKA__*)")
        }
    }
}
