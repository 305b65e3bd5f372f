//! Every way a request to the edge can fail, and the one place where each
//! becomes an HTTP status, a JSON error body or a WebSocket error event.

use std::convert::Infallible;

use rill_domain::{BodyError, IdError};
use rill_runtime::session_cookie::SessionError;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("ref is longer than {max} characters")]
    RefTooLong { max: usize },
    #[error("binary frames are not supported: send JSON text frames")]
    BinaryFrame,
    #[error("expected Content-Type: application/json")]
    NotJson,
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    #[error("WebSocket upgrade from origin {0:?} is not allowed")]
    CrossOrigin(String),
    #[error("this edge is at capacity: retry in a moment")]
    AtCapacity,
    #[error("this edge is shutting down: reconnect")]
    ShuttingDown,
    #[error("the message could not be written to Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// How long a client should wait before retrying a 503.
const RETRY_AFTER_SECS: u64 = 2;

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::BadId(_)
            | Self::BadJson(_)
            | Self::RefTooLong { .. }
            | Self::BinaryFrame
            | Self::NotUpgrade => StatusCode::BAD_REQUEST,
            Self::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CrossOrigin(_) => StatusCode::FORBIDDEN,
            Self::AtCapacity | Self::ShuttingDown | Self::Kafka(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Session(SessionError::Missing) => "no_session",
            Self::Session(SessionError::Invalid) => "invalid_session",
            Self::Session(SessionError::Expired) => "session_expired",
            Self::BadId(_) => "bad_id",
            Self::BadJson(_) => "bad_json",
            Self::Body(BodyError::TooLarge { .. }) => "message_too_large",
            Self::Body(_) => "invalid_body",
            Self::RefTooLong { .. } => "ref_too_long",
            Self::BinaryFrame => "binary_frame",
            Self::NotJson => "not_json",
            Self::NotUpgrade => "not_upgrade",
            Self::CrossOrigin(_) => "cross_origin",
            Self::AtCapacity => "at_capacity",
            Self::ShuttingDown => "shutting_down",
            Self::Kafka(_) => "unavailable",
        }
    }

    /// The HTTP response: status, `{"error": code, "message": text}`, and
    /// `Retry-After` on 503.
    pub fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let reply = warp::reply::with_status(warp::reply::json(&body), status);
        let mut response = warp::reply::Reply::into_response(reply);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", RETRY_AFTER_SECS.into());
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// Turns warp's own rejections (no route, wrong method, body too large...)
/// into the same JSON error shape.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, code, message) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_owned(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed".to_owned(),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "request body too large".to_owned(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "Content-Length required".to_owned(),
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{rejection:?}"),
        )
    };
    let body = ErrorBody {
        error: code,
        message,
    };
    Ok(warp::reply::Reply::into_response(warp::reply::with_status(
        warp::reply::json(&body),
        status,
    )))
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
