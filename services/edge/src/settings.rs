//! The edge's settings: defaults here, then the file named by `RILL_CONFIG`,
//! then `RILL_*` environment variables (see `rill_runtime::settings`).

use std::net::SocketAddr;

use rill_runtime::session_cookie::SessionSettings;
use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use rill_sessions::RedisSettings;
use rill_store::StoreSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Address to listen on. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// This node's name in logs, metrics and the `x-rill-edge` response
    /// header. Default: `edge-` and a random suffix.
    pub node_id: String,
    /// Allows running without a cookie key. Default false.
    pub dev_mode: bool,
    /// Origins (`scheme://host[:port]`) allowed to open a WebSocket besides
    /// the edge's own. Default: none.
    pub allowed_origins: Vec<String>,
    /// How long a confirmed membership is trusted before the store is asked
    /// again, in seconds (unbinds arrive as events and apply at once).
    /// Default 30.
    pub membership_cache_secs: u64,
    pub session: SessionSettings,
    pub limits: Limits,
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
}

/// Every limit the edge enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message body, in UTF-8 bytes. Larger ones get a
    /// `message_too_large` error; the session goes on. Default 4096.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame or HTTP request body, in bytes. A larger
    /// WebSocket frame closes the connection (code 1009); a larger POST gets
    /// 413. Default 65536.
    pub max_frame_bytes: usize,
    /// Most live sessions (WebSocket and SSE) at once; past it, 503 with
    /// `Retry-After`. Default 10000.
    pub max_connections: usize,
    /// Events queued for one session before newer ones are dropped and the
    /// client is told of the gap. Default 256.
    pub session_queue_depth: usize,
    /// Sends of one WebSocket session waiting for Kafka at once; past it the
    /// edge stops reading that socket until one completes. Default 32.
    pub max_inflight_sends: usize,
    /// Seconds between SSE keep-alive comments. Default 15.
    pub sse_keepalive_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4096,
            max_frame_bytes: 65_536,
            max_connections: 10_000,
            session_queue_depth: 256,
            max_inflight_sends: 32,
            sse_keepalive_secs: 15,
        }
    }
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            node_id: String::new(),
            dev_mode: false,
            allowed_origins: Vec::new(),
            membership_cache_secs: 30,
            session: SessionSettings::default(),
            limits: Limits::default(),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for EdgeSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.session.validate(self.dev_mode)?;
        self.kafka.validate()?;
        self.store.validate()?;
        self.redis.validate()?;
        self.limits.validate()?;
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(SettingsError::invalid(
                    "allowed_origins",
                    format!("{origin:?} is not an http(s) origin"),
                ));
            }
        }
        Ok(())
    }
}

impl EdgeSettings {
    /// The node id, or a fresh random one when none is set.
    pub fn node_id_or_random(&self) -> String {
        if self.node_id.is_empty() {
            format!("edge-{:06x}", rand::random::<u32>() & 0xff_ffff)
        } else {
            self.node_id.clone()
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("limits.max_message_bytes", self.max_message_bytes),
            ("limits.max_connections", self.max_connections),
            ("limits.session_queue_depth", self.session_queue_depth),
            ("limits.max_inflight_sends", self.max_inflight_sends),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::invalid(field, "must be above 0"));
        }
        // A frame carries the body inside a JSON envelope: leave room for it,
        // so that an oversized body is answered, not cut off.
        if self.max_frame_bytes < 2 * self.max_message_bytes + 1024 {
            return Err(SettingsError::invalid(
                "limits.max_frame_bytes",
                "must be at least twice limits.max_message_bytes plus 1024",
            ));
        }
        if self.sse_keepalive_secs == 0 {
            return Err(SettingsError::invalid(
                "limits.sse_keepalive_secs",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_runtime::Secret;

    fn valid() -> EdgeSettings {
        let mut s = EdgeSettings::default();
        s.session.cookie_key = Some(Secret::new("k".repeat(64)));
        s
    }

    #[test]
    fn defaults_with_a_key_are_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn a_frame_limit_too_small_for_the_body_limit_is_refused() {
        let mut s = valid();
        s.limits.max_frame_bytes = s.limits.max_message_bytes;
        let err = s.validate().expect_err("must fail");
        assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
    }

    #[test]
    fn zero_limits_name_their_field() {
        let mut s = valid();
        s.limits.max_connections = 0;
        let err = s.validate().expect_err("must fail");
        assert!(err.to_string().contains("limits.max_connections"), "{err}");
    }

    #[test]
    fn origins_must_be_http() {
        let mut s = valid();
        s.allowed_origins = vec!["example.com".into()];
        assert!(s.validate().is_err());
    }

    #[test]
    fn node_id_is_generated_when_empty() {
        let s = valid();
        assert!(s.node_id_or_random().starts_with("edge-"));
        let named = EdgeSettings {
            node_id: "edge-7".into(),
            ..valid()
        };
        assert_eq!(named.node_id_or_random(), "edge-7");
    }
}
