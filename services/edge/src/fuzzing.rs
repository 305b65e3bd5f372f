//! What the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) drive: the
//! edge's parsers of what a client sends, each reached the way a request
//! reaches it. Not an API: the transports stay private, and this module
//! hands out no more than the targets call.

use rill_domain::{Position, ProfileId};
use warp::http::{HeaderMap, HeaderName, HeaderValue};

pub use crate::events::{MAX_IDEMPOTENCY_KEY_LEN, MAX_REF_LEN};
pub use crate::transport::websocket::READ_CHUNK;
pub use crate::transport::websocket::frame::{Decoder, FrameError, Message};

/// A send that passed the edge's checks.
#[derive(Debug)]
pub struct Send {
    pub body: String,
    pub reference: Option<String>,
    pub idempotency_key: Option<String>,
}

/// What a refused request gets: its error code and the JSON of the `error`
/// event a WebSocket client is sent.
#[derive(Debug)]
pub struct Refused {
    pub code: &'static str,
    pub event_json: String,
}

/// A WebSocket text frame: `Ok(Some(send))`, `Ok(None)` for a ping, or
/// what the client is told.
pub fn websocket_text(text: &str) -> Result<Option<Send>, Refused> {
    use crate::transport::websocket::{Request, parse_frame};
    match parse_frame(text) {
        Ok(Request::Ping) => Ok(None),
        Ok(Request::Send {
            body,
            reference,
            key,
        }) => Ok(Some(Send {
            body,
            reference,
            idempotency_key: key,
        })),
        Err((err, reference)) => Err(Refused {
            code: err.code(),
            event_json: err.event(reference.as_deref()).json.clone(),
        }),
    }
}

/// The body of `POST /live/{profile}/messages` with this `Content-Type`.
pub fn post_send(content_type: Option<&str>, body: &[u8]) -> Result<Send, Refused> {
    crate::transport::http::parse_send(content_type.map(str::to_owned), body)
        .map(|request| Send {
            body: request.body,
            reference: request.reference,
            idempotency_key: request.idempotency_key,
        })
        .map_err(|err| Refused {
            code: err.code(),
            event_json: err.event(None).json.clone(),
        })
}

/// A header map of the pairs whose value a request could carry (hyper
/// refuses the others before the edge sees them).
fn headers(pairs: &[(&'static str, Option<&[u8]>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    map
}

/// The session cookie header and the bearer token the edge reads from a
/// request's `Cookie` and `Authorization` headers and its query string;
/// both then go to their verifiers (`rill_runtime::session_cookie`,
/// `rill_auth::token`).
pub fn credentials(
    cookie: Option<&[u8]>,
    authorization: Option<&[u8]>,
    query: &str,
    verify: impl FnOnce(Option<&str>, Option<&str>),
) {
    let headers = headers(&[("cookie", cookie), ("authorization", authorization)]);
    let credentials = crate::transport::credentials(&headers, query);
    verify(credentials.cookie, credentials.bearer());
}

/// The profile and resume position of a stream request: `profile` from
/// its path, `Last-Event-ID` (SSE) or `?last_position=` from its query.
pub fn stream_ids(
    profile: &str,
    last_event_id: Option<&[u8]>,
    query: &str,
) -> Result<(ProfileId, Option<Position>), &'static str> {
    let headers = headers(&[("last-event-id", last_event_id)]);
    let last_position = crate::transport::sse::last_position(&headers, query);
    crate::transport::parse_ids(profile, last_position).map_err(|err| err.code())
}
