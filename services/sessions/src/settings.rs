//! Where Redis is: a `redis` section in the settings of the edge and the api.

use std::time::Duration;

use rill_runtime::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URLs, a list or comma separated. Several URLs are independent
    /// servers (not replicas): a live-session lock then needs a majority of
    /// them (Redlock). Default `redis://127.0.0.1:6379`.
    #[serde(deserialize_with = "rill_runtime::settings::one_or_many")]
    pub urls: Vec<String>,
    /// Prefix of every key. Default `rill`.
    pub key_prefix: String,
    /// How long a live session's lock and registry entry live without a
    /// refresh, in seconds: how long the sessions of a crashed edge still
    /// count, and so how long after a `kill -9` the same user can open the
    /// same profile again. Default 30.
    #[serde(with = "rill_runtime::settings::secs")]
    pub session_ttl_secs: Duration,
    /// How long one Redis command may take (connect or answer), in
    /// milliseconds; a server slower than that counts as down for that
    /// command. Default 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub timeout_ms: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379".into()],
            key_prefix: "rill".into(),
            session_ttl_secs: Duration::from_secs(30),
            timeout_ms: Duration::from_millis(1000),
        }
    }
}

impl RedisSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.urls.is_empty() {
            return Err(SettingsError::invalid(
                "redis.urls",
                "must name at least one Redis",
            ));
        }
        if let Some(bad) = self
            .urls
            .iter()
            .find(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
        {
            return Err(SettingsError::invalid(
                "redis.urls",
                format!("{bad:?} is not a redis:// URL"),
            ));
        }
        if !(Duration::from_secs(3)..=Duration::from_secs(3600)).contains(&self.session_ttl_secs) {
            return Err(SettingsError::invalid(
                "redis.session_ttl_secs",
                "must be between 3 and 3600",
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.timeout_ms) {
            return Err(SettingsError::invalid(
                "redis.timeout_ms",
                "must be between 10 and 10000",
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(SettingsError::invalid(
                "redis.key_prefix",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
