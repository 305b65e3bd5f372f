//! Every way an api request can fail, and the one place where each becomes
//! an HTTP status and a JSON body `{"error": code, "message": text}`.

use rill_domain::{IdError, NameError};
use warp::http::StatusCode;
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
        }
    }

    pub fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        rill_runtime::ops::error_response(self.status(), self.code(), self.to_string())
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
}
