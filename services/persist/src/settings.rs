//! The persist's settings: defaults here, then the file named by `RILL_CONFIG`,
//! then `RILL_*` environment variables (see `rill_runtime::settings`).

use std::net::SocketAddr;

use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistSettings {
    /// Address to listen on. Default `127.0.0.1:8091`.
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for PersistSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            kafka: KafkaSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for PersistSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.kafka.validate()
    }
}
