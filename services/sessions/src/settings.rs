//! Where Redis is: a `redis` section in the settings of the edge and the api.

use std::time::Duration;

use rill_runtime::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URLs, a list or comma separated. Several URLs are independent
    /// servers (not replicas): a live-session lock then needs a majority of
    /// them (Redlock). `rediss://` is TLS; a user and password in the URL
    /// (`rediss://user:password@host:port`) log in as that ACL user
    /// (`AUTH user password`), a password alone as the default user.
    /// Default `redis://127.0.0.1:6379`.
    #[serde(deserialize_with = "rill_runtime::settings::one_or_many")]
    pub urls: Vec<String>,
    /// Prefix of every key. Default `rill`.
    pub key_prefix: String,
    /// How long a live session's lock and registry entry live without a
    /// refresh, in seconds: how long the sessions of a crashed edge still
    /// count when no other edge is left to end them (the edges do within
    /// `edges.dead_after_ms`; see `edges.rs`). Default 30.
    #[serde(with = "rill_runtime::settings::secs")]
    pub session_ttl_secs: Duration,
    /// How long one Redis command may take (connect or answer), in
    /// milliseconds; a server slower than that counts as down for that
    /// command. Default 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub timeout_ms: Duration,
    /// The CA certificates (PEM) that the servers of `rediss://` URLs are
    /// checked against (certificate and host name). Default empty: the
    /// system's CAs.
    pub ca_file: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379".into()],
            key_prefix: "rill".into(),
            session_ttl_secs: Duration::from_secs(30),
            timeout_ms: Duration::from_millis(1000),
            ca_file: String::new(),
        }
    }
}

/// Not derived: a URL may carry a password (`redis://:pw@host`), which
/// `Debug` must not print.
impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| without_credentials(u)).collect();
        f.debug_struct("RedisSettings")
            .field("urls", &urls)
            .field("key_prefix", &self.key_prefix)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `url` with its user and password, if any, replaced by `[redacted]`.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[redacted]".to_owned(); // not a URL: say nothing of it
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://[redacted]@{host}{path}"),
        None => url.to_owned(),
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
        if !self.ca_file.is_empty() {
            if !self.urls.iter().any(|u| u.starts_with("rediss://")) {
                return Err(SettingsError::invalid(
                    "redis.ca_file",
                    "is set, but no URL of redis.urls is rediss:// (TLS)",
                ));
            }
            rill_runtime::settings::security::readable_file("redis.ca_file", &self.ca_file)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_print_a_url_password() {
        let settings = RedisSettings {
            urls: vec![
                "redis://:hunter2@redis-a:6379/0".into(),
                "rediss://rill:hunter3@redis-b:6380".into(),
                "redis://redis-c:6379".into(),
            ],
            ..RedisSettings::default()
        };
        let text = format!("{settings:?}");
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("redis://[redacted]@redis-a:6379/0"), "{text}");
        assert!(text.contains("rediss://[redacted]@redis-b:6380"), "{text}");
        assert!(text.contains("redis://redis-c:6379"), "{text}");
    }
}
