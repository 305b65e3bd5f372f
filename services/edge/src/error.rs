//! Every way a request to the edge can fail, and the one place where each
//! becomes an HTTP status, a JSON error body or a WebSocket error event.

use rill_domain::{BodyError, IdError};
use rill_runtime::json_body::JsonBodyError;
use rill_runtime::session_cookie::SessionError;
use warp::http::StatusCode;
use warp::reply::Response;

/// WebSocket close codes of the application (4000-4999), echoing the HTTP
/// status of the same refusal.
pub mod close_code {
    /// The user is not (or no longer) a member of the profile.
    pub const NOT_A_MEMBER: u16 = 4403;
    /// The user already has a live session on the profile.
    pub const ALREADY_LIVE: u16 = 4409;
    /// Standard codes the edge uses: normal (answering the client's close),
    /// going away (drain, reconnect), too large a frame, policy (too slow).
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_LARGE: u16 = 1009;
    pub const TOO_SLOW: u16 = 1008;
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error(transparent)]
    JsonBody(#[from] rill_runtime::json_body::JsonBodyError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("ref is longer than {max} characters")]
    RefTooLong { max: usize },
    #[error("binary frames are not supported: send JSON text frames")]
    BinaryFrame,
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    #[error("WebSocket upgrade from origin {0:?} is not allowed")]
    CrossOrigin(String),
    #[error("no profile with that id")]
    UnknownProfile,
    #[error("no user with that id")]
    UnknownUser,
    #[error("not a member of this profile")]
    NotAMember,
    #[error("the store failed: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error("the live-session registry failed: {0}")]
    Sessions(#[from] rill_sessions::SessionsError),
    #[error(
        "this user already has a live session on this profile (another tab, device or edge); close it first"
    )]
    AlreadyLive,
    #[error("live-session locks are unavailable: {0}")]
    LocksUnavailable(rill_sessions::LockError),
    #[error("this edge is at capacity: retry in a moment")]
    AtCapacity,
    #[error("this edge is shutting down: reconnect")]
    ShuttingDown,
    #[error("the message could not be written to Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::BadId(_)
            | Self::BadJson(_)
            | Self::RefTooLong { .. }
            | Self::BinaryFrame
            | Self::NotUpgrade
            | Self::JsonBody(JsonBodyError::BadJson(_)) => StatusCode::BAD_REQUEST,
            Self::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::JsonBody(JsonBodyError::NotJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CrossOrigin(_) | Self::NotAMember => StatusCode::FORBIDDEN,
            Self::UnknownProfile | Self::UnknownUser => StatusCode::NOT_FOUND,
            Self::AlreadyLive => StatusCode::CONFLICT,
            Self::AtCapacity
            | Self::ShuttingDown
            | Self::Kafka(_)
            | Self::Store(_)
            | Self::LocksUnavailable(_)
            | Self::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Session(SessionError::Missing) => "no_session",
            Self::Session(SessionError::Invalid) => "invalid_session",
            Self::Session(SessionError::Expired) => "session_expired",
            Self::BadId(_) => "bad_id",
            Self::BadJson(_) | Self::JsonBody(JsonBodyError::BadJson(_)) => "bad_json",
            Self::Body(BodyError::TooLarge { .. }) => "message_too_large",
            Self::Body(_) => "invalid_body",
            Self::RefTooLong { .. } => "ref_too_long",
            Self::BinaryFrame => "binary_frame",
            Self::JsonBody(JsonBodyError::NotJson) => "not_json",
            Self::NotUpgrade => "not_upgrade",
            Self::CrossOrigin(_) => "cross_origin",
            Self::UnknownProfile => "unknown_profile",
            Self::UnknownUser => "unknown_user",
            Self::NotAMember => "not_a_member",
            Self::Store(_) => "store_unavailable",
            Self::Sessions(_) => "sessions_unavailable",
            Self::AlreadyLive => "already_live",
            Self::LocksUnavailable(_) => "locks_unavailable",
            Self::AtCapacity => "at_capacity",
            Self::ShuttingDown => "shutting_down",
            Self::Kafka(_) => "unavailable",
        }
    }

    /// The `error` event a live session gets for this error; `reference`
    /// is the `ref` of the send it answers, if any.
    pub fn event(&self, reference: Option<&str>) -> std::sync::Arc<crate::events::Outbound> {
        crate::events::ServerEvent::Error {
            code: self.code(),
            message: &self.to_string(),
            reference,
        }
        .to_outbound()
    }

    /// The HTTP response: status, `{"error": code, "message": text}`, and
    /// `Retry-After` on 503.
    pub fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        }
        rill_runtime::ops::error_response(self.status(), self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        assert_eq!(
            EdgeError::Session(SessionError::Missing).status(),
            StatusCode::UNAUTHORIZED
        );
        let big = EdgeError::Body(BodyError::TooLarge { len: 10, max: 5 });
        assert_eq!(
            (big.status(), big.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large")
        );
        assert_eq!(
            EdgeError::CrossOrigin("x".into()).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            (
                EdgeError::AlreadyLive.status(),
                EdgeError::AlreadyLive.code()
            ),
            (StatusCode::CONFLICT, "already_live")
        );
        let no_quorum = EdgeError::LocksUnavailable(rill_sessions::LockError::NoQuorum {
            granted_or_busy: 1,
            servers: 3,
            needed: 2,
        });
        assert_eq!(no_quorum.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn service_unavailable_says_when_to_retry() {
        let response = EdgeError::AtCapacity.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
    }
}
