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
//!   `POST /login/token` (a connection token for the session cookie).
//!
//! Every route takes a session cookie or a connection token
//! (`crate::auth`); a cookie request that sends must come from a page of
//! this site (`Origin`). A stream opens only within [`limits`]: streams
//! started per client address ([`address`]) and per user, live sessions
//! per address.

pub mod address;
pub mod http;
pub mod limits;
pub mod sse;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use rill_domain::{Position, ProfileId, UserId};
use rill_runtime::rate_limit::{KeyedLimiter, Rate};
use tokio_util::task::TaskTracker;
use warp::http::HeaderMap;

use crate::auth::{Authenticator, Credentials, Identity};
use crate::error::EdgeError;
use crate::metrics::{EdgeMetrics, Transport};
use crate::session::{LiveSession, Sessions};
use crate::settings::EdgeSettings;
use address::ClientAddress;
use limits::{AddressPermit, OpenLimits};

/// What the transports share.
#[derive(Debug)]
pub struct Context {
    pub sessions: Arc<Sessions>,
    pub auth: Authenticator,
    pub settings: TransportSettings,
    pub metrics: Arc<EdgeMetrics>,
    /// POST sends per user (`limits.sends_per_user`).
    pub post_sends: KeyedLimiter<UserId>,
    /// Streams opened per user and per address, sessions per address.
    pub open_limits: OpenLimits,
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
    /// `limits.sends_per_session`.
    pub sends_per_session: Rate,
    /// `limits.upgrade_timeout_secs`.
    pub upgrade_timeout: Duration,
    /// `limits.fragment_timeout_secs`.
    pub fragment_timeout: Duration,
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
            sends_per_session: settings.limits.sends_per_session,
            upgrade_timeout: settings.limits.upgrade_timeout_secs,
            fragment_timeout: settings.limits.fragment_timeout_secs,
        }
    }
}

impl Context {
    /// The caller, from a connection token or the session cookie.
    pub async fn identify(&self, credentials: Credentials<'_>) -> Result<Identity, EdgeError> {
        Ok(self.auth.identify(credentials).await?)
    }

    /// The caller of a stream from `address`, within the limits on
    /// starting streams: the address's (before the caller is known, so
    /// that a flood of bad credentials is limited too), then the user's.
    pub async fn admit(
        &self,
        credentials: Credentials<'_>,
        address: Option<ClientAddress>,
    ) -> Result<Identity, EdgeError> {
        if let Some(address) = address {
            self.open_limits.address_may_open(address)?;
        }
        let identity = self.identify(credentials).await?;
        self.open_limits.user_may_open(identity.user)?;
        Ok(identity)
    }

    /// A place for one more session from `address`
    /// (`limits.max_sessions_per_address`), held while the session lives.
    pub fn hold_place(
        &self,
        address: Option<ClientAddress>,
    ) -> Result<Option<AddressPermit>, EdgeError> {
        address
            .map(|address| self.open_limits.hold_session(address))
            .transpose()
    }

    /// Opens a live session of the caller from `address` on `profile` (an
    /// id from the path), after `last_position` (from the query or
    /// `Last-Event-ID`); with its place in the address's count.
    pub async fn open(
        &self,
        credentials: Credentials<'_>,
        address: Option<ClientAddress>,
        profile: &str,
        last_position: Option<&str>,
        transport: Transport,
    ) -> Result<(LiveSession, Option<AddressPermit>), EdgeError> {
        let identity = self.admit(credentials, address).await?;
        let (profile, last_position) = parse_ids(profile, last_position)?;
        let place = self.hold_place(address)?;
        let session = self
            .open_as(&identity, profile, transport, last_position)
            .await?;
        Ok((session, place))
    }

    /// Opens a live session of `identity` on `profile`, marked as its
    /// login's so that a logout ends it.
    pub async fn open_as(
        &self,
        identity: &Identity,
        profile: ProfileId,
        transport: Transport,
        last_position: Option<Position>,
    ) -> Result<LiveSession, EdgeError> {
        if !identity.may_use(profile) {
            return Err(EdgeError::ProfileNotAllowed);
        }
        let session = self
            .sessions
            .open(identity.user, profile, transport, last_position)
            .await?;
        if let Some(login) = identity.login {
            session.belongs_to(login);
        }
        Ok(session)
    }
}

/// The credentials of a request: its `Cookie` and `Authorization` headers
/// and the `token` query parameter of `query`.
pub fn credentials<'a>(headers: &'a HeaderMap, query: &'a str) -> Credentials<'a> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    Credentials {
        cookie: header("cookie"),
        authorization: header("authorization"),
        token: query_param(query, "token"),
    }
}

/// Whether a request comes from a page of this site: its `Origin` is the
/// host it reached, or one of `allowed` (`allowed_origins`). A request
/// without `Origin` (not from a browser) passes unless `required`: a
/// browser sends `Origin` with every POST, so a cookie send without one is
/// refused.
pub fn same_site(headers: &HeaderMap, allowed: &[String], required: bool) -> Result<(), EdgeError> {
    let Some(origin) = headers.get("origin") else {
        return match required {
            true => Err(EdgeError::CrossOrigin("<none>".into())),
            false => Ok(()),
        };
    };
    let origin = origin
        .to_str()
        .map_err(|_| EdgeError::CrossOrigin("<not text>".into()))?;
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    match rill_runtime::origin::is_same_site(origin, host, allowed) {
        true => Ok(()),
        false => Err(EdgeError::CrossOrigin(origin.to_owned())),
    }
}

/// A profile id from a path and a message id from a query or header.
pub fn parse_ids(
    profile: &str,
    last_position: Option<&str>,
) -> Result<(ProfileId, Option<Position>), EdgeError> {
    let profile: ProfileId = profile.parse()?;
    let last_position = last_position.map(str::parse).transpose()?;
    Ok((profile, last_position))
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

/// A header map of `pairs`, for the transports' tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, warp::http::HeaderValue::from_static(v));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::{parse_ids, query_param, same_site, test_headers as headers};
    use crate::error::EdgeError;

    #[test]
    fn the_same_origin_is_allowed_and_no_origin_only_when_not_required() {
        let same = headers(&[("host", "a:1"), ("origin", "http://a:1")]);
        assert!(same_site(&same, &[], true).is_ok());
        let none = headers(&[("host", "a:1")]);
        assert!(same_site(&none, &[], false).is_ok());
        assert!(matches!(
            same_site(&none, &[], true),
            Err(EdgeError::CrossOrigin(_))
        ));
    }

    #[test]
    fn other_origins_need_to_be_listed() {
        let h = headers(&[("host", "a:1"), ("origin", "http://evil.example")]);
        assert!(matches!(
            same_site(&h, &[], false),
            Err(EdgeError::CrossOrigin(_))
        ));
        assert!(same_site(&h, &["http://evil.example".into()], false).is_ok());
    }

    #[test]
    fn query_params_are_found_by_name() {
        let name = "last_position";
        assert_eq!(query_param("last_position=abc&x=1", name), Some("abc"));
        assert_eq!(query_param("x=1&last_position=abc", name), Some("abc"));
        assert_eq!(query_param("last_position=", name), None);
        assert_eq!(query_param("", name), None);
        assert_eq!(query_param("last_positions=1", name), None);
    }

    #[test]
    fn ids_are_parsed_at_the_boundary() {
        let profile = uuid::Uuid::new_v4().to_string();
        assert!(parse_ids(&profile, None).is_ok());
        assert!(parse_ids("not-an-id", None).is_err());
        assert!(matches!(
            parse_ids(&profile, Some("nope")),
            Err(EdgeError::BadPosition(_))
        ));
        let (_, position) = parse_ids(&profile, Some("12-0000abcd")).expect("a position");
        assert_eq!(position.map(|p| p.offset), Some(12));
    }
}
