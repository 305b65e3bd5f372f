//! The api's settings: defaults here, then the file named by `RILL_CONFIG`,
//! then `RILL_*` environment variables (see `rill_runtime::settings`).

use std::net::SocketAddr;
use std::time::Duration;

use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use rill_sessions::RedisSettings;
use rill_store::StoreSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Address to listen on. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// How long a write waits to become visible in the store before the api
    /// answers 202 instead of 200/201, in ms. Default 5000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub consistency_timeout_ms: Duration,
    pub limits: ApiLimits,
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
}

/// Every limit the api enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// Largest `limit` of a page. Default 200.
    pub max_page_size: usize,
    /// `limit` when a request gives none. Default 50.
    pub default_page_size: usize,
    /// Most users one test-data request may create. Default 10000.
    pub max_test_users: usize,
    /// Most profiles one test-data request may create. Default 1000.
    pub max_test_profiles: usize,
    /// Largest request body, in bytes. Default 65536.
    pub max_body_bytes: u64,
    /// Largest `data` of a publish, as JSON text, in bytes. Default 16384.
    pub max_publish_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_page_size: 200,
            default_page_size: 50,
            max_test_users: 10_000,
            max_test_profiles: 1_000,
            max_body_bytes: 65_536,
            max_publish_bytes: 16_384,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            consistency_timeout_ms: Duration::from_secs(5),
            limits: ApiLimits::default(),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for ApiSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        if l.max_page_size == 0 {
            return Err(SettingsError::invalid(
                "limits.max_page_size",
                "must be above 0",
            ));
        }
        if l.default_page_size == 0 || l.default_page_size > l.max_page_size {
            return Err(SettingsError::invalid(
                "limits.default_page_size",
                "must be between 1 and limits.max_page_size",
            ));
        }
        if l.max_body_bytes < 1024 {
            return Err(SettingsError::invalid(
                "limits.max_body_bytes",
                "must be at least 1024",
            ));
        }
        self.kafka.validate()?;
        self.redis.validate()?;
        self.store.validate()
    }
}
