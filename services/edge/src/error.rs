//! Every way a request to the edge can fail, and the one place where each
//! becomes an HTTP status, a JSON error body or a WebSocket error event.
//! The layers below have errors of their own (membership, the locks, the
//! publisher, opening a session), which know nothing of HTTP; they become
//! an [`EdgeError`] here, at the transport boundary. (Why a live session
//! ends, and its close code, is [`crate::disconnect`].)

use rill_domain::{BodyError, IdError};
use rill_runtime::json_body::JsonBodyError;
use rill_runtime::session_cookie::SessionError;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::auth::AuthError;
use crate::membership::MembershipError;
use crate::session::{AcquireError, OpenError, SendError};
use crate::to_kafka::PublishError;

/// `Retry-After` of a stream refused for `limits.max_sessions_per_address`:
/// a place frees when one of the address's sessions ends, which no clock
/// foretells; long enough that a client does not hammer the edge.
const SESSIONS_RETRY_AFTER_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Token(#[from] rill_auth::token::TokenError),
    #[error("this edge accepts no connection tokens (no keys in its settings)")]
    TokensOff,
    #[error("the connection token does not allow this profile")]
    ProfileNotAllowed,
    #[error("the login store (Redis) failed: {0}")]
    Logins(#[from] rill_sessions::SessionsError),
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error(transparent)]
    JsonBody(#[from] rill_runtime::json_body::JsonBodyError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("too many sends: wait {} ms", .0.as_millis())]
    RateLimited(std::time::Duration),
    /// `limits.opens_per_user` or `limits.opens_per_address`.
    #[error("too many streams opened: wait {} ms", .0.as_millis())]
    TooManyOpens(std::time::Duration),
    /// `limits.max_sessions_per_address`.
    #[error("this client address has {max} live sessions on this edge already: close one first")]
    TooManySessions { max: usize },
    #[error("ref is longer than {max} characters")]
    RefTooLong { max: usize },
    #[error(
        "idempotency_key must be 1 to {} characters without spaces or control characters",
        crate::events::MAX_IDEMPOTENCY_KEY_LEN
    )]
    BadIdempotencyKey,
    #[error("binary frames are not supported: send JSON text frames")]
    BinaryFrame,
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    #[error("requests from origin {0:?} are not allowed here")]
    CrossOrigin(String),
    #[error("no profile with that id")]
    UnknownProfile,
    #[error("not a member of this profile")]
    NotAMember,
    #[error("the store failed: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error(
        "this user already has a live session on this profile (another tab, device or edge); close it first"
    )]
    AlreadyLive,
    #[error("live-session locks are unavailable: {0}")]
    LocksUnavailable(rill_sessions::LockError),
    #[error("this edge is at capacity: retry in a moment")]
    AtCapacity,
    #[error("this edge is still reading its recovery window: retry in a moment")]
    Starting,
    #[error("bad position: {0}")]
    BadPosition(#[from] rill_domain::PositionError),
    #[error("this edge is shutting down: reconnect")]
    ShuttingDown,
    #[error("the message could not be written to Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl From<AuthError> for EdgeError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Session(err) => Self::Session(err),
            AuthError::Token(err) => Self::Token(err),
            AuthError::TokensOff => Self::TokensOff,
            AuthError::Logins(err) => Self::Logins(err),
        }
    }
}

impl From<MembershipError> for EdgeError {
    fn from(err: MembershipError) -> Self {
        match err {
            MembershipError::NotAMember => Self::NotAMember,
            MembershipError::UnknownProfile => Self::UnknownProfile,
            MembershipError::Store(err) => Self::Store(err),
        }
    }
}

impl From<AcquireError> for EdgeError {
    fn from(err: AcquireError) -> Self {
        match err {
            AcquireError::AlreadyLive => Self::AlreadyLive,
            AcquireError::Unavailable(err) => Self::LocksUnavailable(err),
        }
    }
}

impl From<PublishError> for EdgeError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::Body(err) => Self::Body(err),
            PublishError::Kafka(err) => Self::Kafka(err),
        }
    }
}

impl From<OpenError> for EdgeError {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::ShuttingDown => Self::ShuttingDown,
            OpenError::AtCapacity => Self::AtCapacity,
            OpenError::Starting => Self::Starting,
            OpenError::Membership(err) => err.into(),
            OpenError::Lock(err) => err.into(),
        }
    }
}

impl From<SendError> for EdgeError {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Membership(err) => err.into(),
            SendError::Publish(err) => err.into(),
            SendError::Keys(err) => Self::Logins(err),
        }
    }
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Session(_) | Self::Token(_) | Self::TokensOff => StatusCode::UNAUTHORIZED,
            Self::ProfileNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited(_) | Self::TooManyOpens(_) | Self::TooManySessions { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::BadId(_)
            | Self::BadPosition(_)
            | Self::BadJson(_)
            | Self::RefTooLong { .. }
            | Self::BadIdempotencyKey
            | Self::BinaryFrame
            | Self::NotUpgrade
            | Self::JsonBody(JsonBodyError::BadJson(_)) => StatusCode::BAD_REQUEST,
            Self::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::JsonBody(JsonBodyError::NotJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CrossOrigin(_) | Self::NotAMember => StatusCode::FORBIDDEN,
            Self::UnknownProfile => StatusCode::NOT_FOUND,
            Self::AlreadyLive => StatusCode::CONFLICT,
            Self::AtCapacity
            | Self::Starting
            | Self::ShuttingDown
            | Self::Kafka(_)
            | Self::Store(_)
            | Self::Logins(_)
            | Self::LocksUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Session(SessionError::Missing) => "no_session",
            Self::Session(SessionError::Invalid) => "invalid_session",
            Self::Session(SessionError::Expired) => "session_expired",
            Self::Session(SessionError::Ended) => "session_ended",
            Self::Token(err) => err.code(),
            Self::TokensOff => "tokens_not_accepted",
            Self::ProfileNotAllowed => "token_profile_not_allowed",
            Self::Logins(_) => "sessions_unavailable",
            Self::BadId(_) => "bad_id",
            Self::BadPosition(_) => "bad_position",
            Self::BadJson(_) | Self::JsonBody(JsonBodyError::BadJson(_)) => "bad_json",
            Self::Body(BodyError::TooLarge { .. }) => "message_too_large",
            Self::Body(_) => "invalid_body",
            Self::RefTooLong { .. } => "ref_too_long",
            Self::BadIdempotencyKey => "bad_idempotency_key",
            Self::RateLimited(_) | Self::TooManyOpens(_) => "rate_limited",
            Self::TooManySessions { .. } => "too_many_sessions",
            Self::BinaryFrame => "binary_frame",
            Self::JsonBody(JsonBodyError::NotJson) => "not_json",
            Self::NotUpgrade => "not_upgrade",
            Self::CrossOrigin(_) => "cross_origin",
            Self::UnknownProfile => "unknown_profile",
            Self::NotAMember => "not_a_member",
            Self::Store(_) => "store_unavailable",
            Self::AlreadyLive => "already_live",
            Self::LocksUnavailable(_) => "locks_unavailable",
            Self::AtCapacity => "at_capacity",
            Self::Starting => "starting",
            Self::ShuttingDown => "shutting_down",
            Self::Kafka(_) => "unavailable",
        }
    }

    /// The `error` event a live session gets for this error; `reference`
    /// is the `ref` of the send it answers, if any.
    pub fn event(&self, reference: Option<&str>) -> std::sync::Arc<crate::events::Outbound> {
        let retry_after_ms = match self {
            Self::RateLimited(wait) | Self::TooManyOpens(wait) => {
                Some(wait.as_millis().max(1) as u64)
            }
            _ => None,
        };
        crate::events::ServerEvent::Error {
            code: self.code(),
            message: &self.to_string(),
            reference,
            retry_after_ms,
        }
        .to_outbound()
    }

    /// The HTTP response: status, `{"error": code, "message": text}`, and
    /// `Retry-After` on 503 and 429.
    pub fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        }
        let response =
            rill_runtime::ops::error_response(self.status(), self.code(), self.to_string());
        let retry_after_secs = match self {
            Self::RateLimited(wait) | Self::TooManyOpens(wait) => {
                rill_runtime::rate_limit::retry_after_secs(wait)
            }
            Self::TooManySessions { .. } => SESSIONS_RETRY_AFTER_SECS,
            _ => return response,
        };
        rill_runtime::ops::with_retry_after(response, retry_after_secs)
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
    fn limits_answer_429_with_when_to_retry() {
        let opens = EdgeError::TooManyOpens(std::time::Duration::from_millis(1500));
        assert_eq!(opens.code(), "rate_limited");
        let response = opens.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        let sessions = EdgeError::TooManySessions { max: 3 };
        assert_eq!(sessions.code(), "too_many_sessions");
        let response = sessions.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
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
