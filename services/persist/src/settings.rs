//! The persistence consumer's settings: defaults here, then the file named
//! by `RILL_CONFIG`, then `RILL_*` environment variables (see
//! `rill_runtime::settings`).

use std::net::SocketAddr;
use std::time::Duration;

use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use rill_store::StoreSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistSettings {
    /// Address of the operations endpoints. Default `127.0.0.1:8091`.
    pub listen: SocketAddr,
    /// Kafka consumer group. Default `rill-persist`.
    pub group_id: String,
    pub batch: BatchSettings,
    /// How often the group's lag is measured (`rill_persist_consumer_lag`),
    /// in ms. Default 15000 (a usual scrape interval).
    #[serde(with = "rill_runtime::settings::millis")]
    pub consumer_lag_interval_ms: Duration,
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub telemetry: TelemetrySettings,
}

/// How records are grouped into one store write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Most records in one write. Default 500.
    pub max_records: usize,
    /// Longest a batch waits to fill once it has a record, in ms. Default 20.
    #[serde(with = "rill_runtime::settings::millis")]
    pub max_wait_ms: Duration,
    /// Largest message body accepted from the message topic, in bytes;
    /// larger records are skipped and counted. Default 65536.
    pub max_message_bytes: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_records: 500,
            max_wait_ms: Duration::from_millis(20),
            max_message_bytes: 65_536,
        }
    }
}

impl Default for PersistSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            group_id: "rill-persist".into(),
            batch: BatchSettings::default(),
            consumer_lag_interval_ms: Duration::from_secs(15),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for PersistSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.group_id.is_empty() {
            return Err(SettingsError::invalid("group_id", "must not be empty"));
        }
        if self.batch.max_records == 0 {
            return Err(SettingsError::invalid(
                "batch.max_records",
                "must be above 0",
            ));
        }
        if self.batch.max_message_bytes == 0 {
            return Err(SettingsError::invalid(
                "batch.max_message_bytes",
                "must be above 0",
            ));
        }
        if self.consumer_lag_interval_ms < Duration::from_millis(100) {
            return Err(SettingsError::invalid(
                "consumer_lag_interval_ms",
                "must be at least 100",
            ));
        }
        self.kafka.validate()?;
        self.store.validate()
    }
}
