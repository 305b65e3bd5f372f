//! The sequencer's settings: defaults here, then the file named by
//! `RILL_CONFIG`, then `RILL_*` environment variables (see
//! `rill_runtime::settings`).

use std::net::SocketAddr;
use std::time::Duration;

use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequencerSettings {
    /// Address of the operations endpoints. Default `127.0.0.1:8092`.
    pub listen: SocketAddr,
    /// Kafka consumer group of the sequencers (they share the message
    /// topic's partitions). Default `rill-sequencer`.
    pub group_id: String,
    /// This instance's transactional id: unique per instance and the same
    /// across its restarts. A restart with the same id aborts what the
    /// crashed run left open at once; under a new id, the open transaction
    /// holds back its partitions until `transaction_timeout_ms`. Default
    /// `rill-sequencer-1`.
    pub transactional_id: String,
    /// How long a transaction may stay open before the broker aborts it,
    /// in ms: the longest a crashed sequencer (restarted under another id)
    /// holds back the partitions it was writing. Default 10000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub transaction_timeout_ms: Duration,
    /// Most records in one transaction. A transaction takes what arrived
    /// while the previous one committed, so under load it grows towards
    /// this and the commits stay few. Default 1000.
    pub max_batch_records: usize,
    /// Largest message body accepted from the message topic, in bytes;
    /// larger records are skipped and counted. Default 65536.
    pub max_message_bytes: usize,
    pub kafka: KafkaSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for SequencerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8092)),
            group_id: "rill-sequencer".into(),
            transactional_id: "rill-sequencer-1".into(),
            transaction_timeout_ms: Duration::from_secs(10),
            max_batch_records: 1000,
            max_message_bytes: 65_536,
            kafka: KafkaSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for SequencerSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.group_id.is_empty() {
            return Err(SettingsError::invalid("group_id", "must not be empty"));
        }
        if self.transactional_id.is_empty() {
            return Err(SettingsError::invalid(
                "transactional_id",
                "must not be empty",
            ));
        }
        if self.transaction_timeout_ms < Duration::from_secs(1) {
            return Err(SettingsError::invalid(
                "transaction_timeout_ms",
                "must be at least 1000",
            ));
        }
        if self.max_batch_records == 0 {
            return Err(SettingsError::invalid(
                "max_batch_records",
                "must be above 0",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(SettingsError::invalid(
                "max_message_bytes",
                "must be above 0",
            ));
        }
        self.kafka.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(SequencerSettings::default().validate().is_ok());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let settings = SequencerSettings {
            transactional_id: String::new(),
            ..SequencerSettings::default()
        };
        let err = settings.validate().expect_err("empty id");
        assert!(err.to_string().contains("transactional_id"), "{err}");
        let settings = SequencerSettings {
            max_batch_records: 0,
            ..SequencerSettings::default()
        };
        let err = settings.validate().expect_err("no records");
        assert!(err.to_string().contains("max_batch_records"), "{err}");
    }
}
