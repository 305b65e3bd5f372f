//! `rill-admin`: operator commands.
//!
//! - `rill-admin create-topics`: creates the Kafka topics named in the
//!   settings (`RILL_KAFKA__*`), with `kafka.partitions` partitions of
//!   `kafka.replication_factor` copies each and `kafka.min_insync_replicas`
//!   as their `min.insync.replicas` (both 1 by default; the Helm chart
//!   asks for 3 and 2). Topics that exist are left alone, so it is safe to
//!   run at every start.
//! - `rill-admin apply-schema`: creates or migrates the Cassandra/ScyllaDB
//!   keyspace and tables named in the settings (`RILL_STORE__CASSANDRA__*`),
//!   with the same code the services run when they open the store
//!   (`rill_store::cassandra`), so the schema has one source. Already
//!   applied migrations are skipped, so it too is safe to run every time.
//!   The Helm chart runs both as Jobs before the services start.
//! - `rill-admin api-key NAME`: makes a new server API key; prints the key
//!   (give it to the server that calls the api, once) and the settings
//!   entry with its SHA-256 digest (what the api keeps).

use anyhow::{Context as _, bail};
use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, Topic};
use rill_store::StoreSettings;
use rill_store::cassandra::CassandraStore;
use serde::{Deserialize, Serialize};

const USAGE: &str = "usage: rill-admin create-topics | apply-schema | api-key NAME   \
    (settings from RILL_CONFIG, RILL_KAFKA__* and RILL_STORE__CASSANDRA__*)";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdminSettings {
    kafka: KafkaSettings,
    store: StoreSettings,
}

impl ServiceSettings for AdminSettings {
    fn validate(&self) -> Result<(), rill_runtime::SettingsError> {
        self.kafka.validate()?;
        self.store.validate()
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
            let names: Vec<&str> = Topic::ALL.iter().map(|t| kafka.topic_name(*t)).collect();
            println!(
                "topics ready: {} (created with {} partitions, replication factor {}, \
                 min.insync.replicas {})",
                names.join(", "),
                kafka.partitions,
                kafka.replication_factor,
                kafka.min_insync_replicas
            );
            Ok(())
        }
        "apply-schema" => {
            let settings: AdminSettings = rill_runtime::settings::load()?;
            let cassandra = &settings.store.cassandra;
            if cassandra.contact_points.is_empty() {
                bail!(
                    "bad settings: store.cassandra.contact_points: must name at least one \
                     Cassandra/ScyllaDB node (RILL_STORE__CASSANDRA__CONTACT_POINTS)"
                );
            }
            // Connecting creates the keyspace and applies every migration.
            CassandraStore::connect(cassandra).await.with_context(|| {
                format!(
                    "applying the schema on {}",
                    cassandra.contact_points.join(",")
                )
            })?;
            println!(
                "schema ready: keyspace {} on {}",
                cassandra.keyspace,
                cassandra.contact_points.join(",")
            );
            Ok(())
        }
        "api-key" => {
            let name = std::env::args().nth(2).unwrap_or_default();
            if name.trim().is_empty() {
                bail!("usage: rill-admin api-key NAME (the name the api logs it by)");
            }
            let key = rill_auth::api_key::generate();
            let digest = rill_auth::api_key::digest(&key);
            println!("key:    {key}");
            println!("digest: {digest}");
            println!("settings (api): [[api_keys.keys]] name = {name:?} sha256 = \"{digest}\"");
            println!("helm values:    auth.apiKeys: [{{name: {name:?}, sha256: \"{digest}\"}}]");
            Ok(())
        }
        _ => bail!(USAGE),
    }
}
