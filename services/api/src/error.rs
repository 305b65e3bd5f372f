//! Every way an api request can fail, and the one place where each becomes
//! an HTTP status and a JSON body `{"error": code, "message": text}`, and
//! is logged: the api's own faults (5xx) at ERROR, the client's (4xx) at
//! DEBUG, so that garbage from clients cannot fill the error log.

use rill_domain::{IdError, NameError};
use rill_runtime::session_cookie::SessionError;

use crate::access::Rule;
use tracing::Level;
use warp::http::StatusCode;
use warp::http::header::{ALLOW, HeaderValue};
use warp::reply::Response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The body is not JSON, or not of the request's shape (a missing or
    /// unknown field, a value of the wrong type).
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// The body is JSON of the right shape, but a value in it breaks a rule
    /// of its own or of the fields it depends on. A name and a value over a
    /// limit have codes of their own (`BadName`, `OverLimit`).
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("expected Content-Type: application/json")]
    NotJson,
    #[error("bad query parameter {name}: {reason}")]
    BadQuery { name: &'static str, reason: String },
    #[error("{field} is {value}; the limit is {max}")]
    OverLimit {
        field: &'static str,
        value: usize,
        max: usize,
    },
    #[error("no {0} with that id")]
    NotFound(&'static str),
    #[error("the user is not bound to the profile")]
    NotBound,
    #[error("the live-session registry failed: {0}")]
    Sessions(#[from] rill_sessions::SessionsError),
    #[error("the store failed: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error("Kafka did not accept the write: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Session(#[from] rill_runtime::session_cookie::SessionError),
    #[error("the X-Api-Key header holds no valid API key")]
    BadApiKey,
    #[error("{}", forbidden_message(*.0))]
    Forbidden(Rule),
    #[error(
        "a request with the session cookie that changes something must come from this site (Origin)"
    )]
    CrossSite,
    #[error("wrong name or password")]
    BadCredentials,
    #[error("that name is taken")]
    NameTaken,
    #[error(transparent)]
    Password(#[from] rill_auth::password::PasswordError),
    #[error("too many attempts: try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the test-data routes are off (setting test_data)")]
    TestDataOff,
    /// A known path asked with a method it does not have; `allowed` are
    /// the ones it has (the `Allow` header).
    #[error("method not allowed; this path takes {}", allowed.join(", "))]
    MethodNotAllowed { allowed: Vec<&'static str> },
}

/// `response` with `Allow: <allowed, comma-separated>` (RFC 9110: a 405
/// must list the methods the resource has).
fn with_allow(mut response: Response, allowed: &[&str]) -> Response {
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}

fn forbidden_message(rule: Rule) -> &'static str {
    match rule {
        Rule::Server => "only a server (an API key) may do this",
        Rule::Oneself => "only the user themself or a server may do this",
        Rule::Member => "only a member of the profile or a server may do this",
        Rule::SignedIn | Rule::Anyone => "not allowed",
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadId(_) | Self::BadName(_) | Self::BadJson(_) | Self::BadQuery { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Invalid { .. } | Self::OverLimit { .. } => StatusCode::BAD_REQUEST,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) | Self::NotBound => StatusCode::NOT_FOUND,
            Self::Store(_) | Self::Kafka(_) | Self::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Session(_) | Self::BadApiKey | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::CrossSite | Self::TestDataOff => StatusCode::FORBIDDEN,
            Self::NameTaken => StatusCode::CONFLICT,
            Self::Password(rill_auth::password::PasswordError::Hashing(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Password(_) => StatusCode::BAD_REQUEST,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadId(_) => "bad_id",
            Self::BadName(_) => "bad_name",
            Self::BadJson(_) => "bad_json",
            Self::Invalid { .. } => "validation_failed",
            Self::NotJson => "not_json",
            Self::BadQuery { .. } => "bad_query",
            Self::OverLimit { .. } => "over_limit",
            Self::NotFound(_) => "not_found",
            Self::NotBound => "not_bound",
            Self::Store(_) => "store_unavailable",
            Self::Sessions(_) => "sessions_unavailable",
            Self::Kafka(_) => "kafka_unavailable",
            Self::Session(SessionError::Missing) => "unauthenticated",
            Self::Session(SessionError::Invalid) => "invalid_session",
            Self::Session(SessionError::Expired) => "session_expired",
            Self::Session(SessionError::Ended) => "session_ended",
            Self::BadApiKey => "bad_api_key",
            Self::Forbidden(_) => "forbidden",
            Self::CrossSite => "cross_site",
            Self::BadCredentials => "bad_credentials",
            Self::NameTaken => "name_taken",
            Self::Password(err) => err.code(),
            Self::RateLimited { .. } => "rate_limited",
            Self::TestDataOff => "test_data_off",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    /// How loud this error is logged: ERROR only when the api (or what it
    /// depends on) failed; a refused request is the client's business.
    pub fn log_level(&self) -> Level {
        if self.status().is_server_error() {
            Level::ERROR
        } else {
            Level::DEBUG
        }
    }

    pub fn into_response(self) -> Response {
        let (status, code) = (self.status(), self.code());
        match self.log_level() {
            Level::ERROR => {
                tracing::error!(status = status.as_u16(), code, error = %self, "request failed")
            }
            _ => tracing::debug!(status = status.as_u16(), code, error = %self, "request refused"),
        }
        let response = rill_runtime::ops::error_response(status, code, self.to_string());
        match self {
            Self::RateLimited { retry_after_secs } => {
                rill_runtime::ops::with_retry_after(response, retry_after_secs)
            }
            Self::MethodNotAllowed { allowed } => with_allow(response, &allowed),
            _ => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_breaks_a_rule_is_not_bad_json() {
        let invalid = ApiError::Invalid {
            field: "event",
            reason: "must not be empty".into(),
        };
        assert_eq!(
            (
                invalid.status(),
                invalid.code(),
                invalid.to_string().as_str()
            ),
            (
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "event must not be empty"
            )
        );
        let bad = ApiError::BadJson("EOF while parsing".into());
        assert_eq!(
            (bad.status(), bad.code()),
            (StatusCode::BAD_REQUEST, "bad_json")
        );
    }

    #[test]
    fn a_405_lists_the_methods_of_the_path() {
        let response = ApiError::MethodNotAllowed {
            allowed: vec!["GET", "DELETE"],
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response.headers().get(ALLOW).and_then(|v| v.to_str().ok()),
            Some("GET, DELETE")
        );
    }

    /// Client garbage is never an ERROR; the api's own failures are.
    #[test]
    fn only_the_apis_own_faults_are_errors() {
        let refused = [
            ApiError::BadJson("expected value".into()),
            ApiError::BadQuery {
                name: "limit",
                reason: "not a number".into(),
            },
            ApiError::NotJson,
            ApiError::NotFound("user"),
            ApiError::BadApiKey,
            ApiError::OverLimit {
                field: "limit",
                value: 201,
                max: 200,
            },
            ApiError::MethodNotAllowed {
                allowed: vec!["GET"],
            },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
        ];
        for error in refused {
            assert_eq!(error.log_level(), Level::DEBUG, "{error}");
        }
        let failed = ApiError::Kafka(rdkafka::error::KafkaError::Canceled);
        assert_eq!(failed.log_level(), Level::ERROR);
    }
}
