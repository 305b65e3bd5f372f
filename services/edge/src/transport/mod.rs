//! Where messages enter and leave: thin adapters between the client's
//! connection and a live session. Each is handed a [`Context`]: the
//! sessions component, the cookie check and its own settings, not the
//! whole edge. Ids are parsed here, at the boundary; what the layers below
//! fail with becomes an HTTP status or a close code in `crate::error` and
//! `crate::disconnect`.
//!
//! - [`websocket`]: `GET /live/{profile}/ws`, sends and receives.
//! - [`sse`]: `GET /live/{profile}/sse`, receives only.
//! - [`http`]: `POST /live/{profile}/messages` (sends for SSE clients),
//!   `POST /login`, `POST /logout`.

pub mod http;
pub mod sse;
pub mod websocket;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rill_domain::{MessageId, ProfileId, UserId};
use rill_runtime::session_cookie::SessionCookies;
use tokio_util::task::TaskTracker;

use crate::error::EdgeError;
use crate::metrics::{EdgeMetrics, Transport};
use crate::session::{LiveSession, Sessions};
use crate::settings::EdgeSettings;

/// What the transports share.
#[derive(Debug)]
pub struct Context {
    pub sessions: Arc<Sessions>,
    pub cookies: SessionCookies,
    pub settings: TransportSettings,
    pub metrics: Arc<EdgeMetrics>,
    /// WebSocket sessions, which outlive the HTTP request that opened them.
    pub tasks: TaskTracker,
}

/// The transports' settings (from the edge's).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// `limits.max_frame_bytes`: the largest WebSocket frame or POST body.
    pub max_frame_bytes: usize,
    /// `limits.max_inflight_sends`.
    pub max_inflight_sends: usize,
    /// `limits.slow_client_secs`: the longest a write may take.
    pub write_timeout: Duration,
    /// `heartbeat.interval_secs`.
    pub heartbeat: Duration,
    /// `heartbeat.timeout_secs`: silence allowed past a heartbeat.
    pub heartbeat_timeout: Duration,
    /// `allowed_origins`.
    pub allowed_origins: Vec<String>,
    /// `drain.reconnect_jitter_ms`.
    pub reconnect_jitter: Duration,
}

impl TransportSettings {
    pub fn from_edge(settings: &EdgeSettings) -> Self {
        Self {
            max_frame_bytes: settings.limits.max_frame_bytes,
            max_inflight_sends: settings.limits.max_inflight_sends,
            write_timeout: settings.limits.slow_client_secs,
            heartbeat: settings.heartbeat.interval_secs,
            heartbeat_timeout: settings.heartbeat.timeout_secs,
            allowed_origins: settings.allowed_origins.clone(),
            reconnect_jitter: settings.drain.reconnect_jitter_ms,
        }
    }
}

impl Context {
    /// The caller's user, from the session cookie in `cookie_header`.
    pub fn authenticate(&self, cookie_header: Option<&str>) -> Result<UserId, EdgeError> {
        Ok(self.cookies.verify(cookie_header, SystemTime::now())?)
    }

    /// Opens a live session of the cookie's user on `profile` (an id from
    /// the path), from `last_id` (from the query or `Last-Event-ID`).
    pub async fn open(
        &self,
        cookie_header: Option<&str>,
        profile: &str,
        last_id: Option<&str>,
        transport: Transport,
    ) -> Result<LiveSession, EdgeError> {
        let user = self.authenticate(cookie_header)?;
        let (profile, last_id) = parse_ids(profile, last_id)?;
        Ok(self
            .sessions
            .open(user, profile, transport, last_id)
            .await?)
    }
}

/// A profile id from a path and a message id from a query or header.
pub fn parse_ids(
    profile: &str,
    last_id: Option<&str>,
) -> Result<(ProfileId, Option<MessageId>), EdgeError> {
    let profile: ProfileId = profile.parse()?;
    let last_id = last_id.map(str::parse).transpose()?;
    Ok((profile, last_id))
}

/// The value of `name` in a raw query string (`a=1&b=2`), if present and
/// not empty. Values here are ids, which need no percent-decoding.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{parse_ids, query_param};

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("last_id=abc&x=1", "last_id"), Some("abc"));
        assert_eq!(query_param("x=1&last_id=abc", "last_id"), Some("abc"));
        assert_eq!(query_param("last_id=", "last_id"), None);
        assert_eq!(query_param("", "last_id"), None);
        assert_eq!(query_param("last_idx=1", "last_id"), None);
    }

    #[test]
    fn ids_are_parsed_at_the_boundary() {
        let profile = uuid::Uuid::new_v4().to_string();
        assert!(parse_ids(&profile, None).is_ok());
        assert!(parse_ids("not-an-id", None).is_err());
        assert!(parse_ids(&profile, Some("nope")).is_err());
    }
}
