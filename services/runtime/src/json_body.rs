//! Reading a JSON request body: at most a set size (read whole even when
//! too large, up to a bound, so that the 413 reaches the client), the
//! content type checked (a cross-site form cannot send `application/json`
//! without a CORS preflight), and a malformed body an error that says what
//! is wrong.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

/// How much of a too-large body is still read, and thrown away, before the
/// 413 is sent. Answering while a proxy in front (Traefik) is still writing
/// the body resets the connection, and the proxy then answers 502 instead.
/// A body larger than the limit and this together is refused at once.
pub const DRAIN_BYTES: u64 = 1 << 20;

/// The request's body was larger than the route allows (413).
#[derive(Debug)]
pub struct BodyTooLarge;

impl warp::reject::Reject for BodyTooLarge {}

/// The request's body could not be read to its end (the client went away
/// or sent a malformed chunk); 400.
#[derive(Debug)]
pub struct BodyUnreadable;

impl warp::reject::Reject for BodyUnreadable {}

/// The `Content-Type` header and a body of at most `max` bytes.
pub fn at_most(
    max: u64,
) -> impl Filter<Extract = (Option<String>, Bytes), Error = Rejection> + Copy {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |content_type, length, body| async move {
            let body = read_at_most(body, length, max).await?;
            Ok::<_, Rejection>((content_type, body))
        })
        .untuple_one()
}

async fn read_at_most<B: Buf>(
    body: impl Stream<Item = Result<B, warp::Error>>,
    length: Option<u64>,
    max: u64,
) -> Result<Bytes, Rejection> {
    let give_up_at = max.saturating_add(DRAIN_BYTES);
    if length.is_some_and(|length| length > give_up_at) {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    let mut body = std::pin::pin!(body);
    let mut kept = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        seen = seen.saturating_add(chunk.remaining() as u64);
        if seen > give_up_at {
            break;
        }
        if seen <= max {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                kept.extend_from_slice(part);
                let read = part.len();
                chunk.advance(read);
            }
        }
    }
    if seen > max {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    Ok(kept.freeze())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonBodyError {
    #[error("expected Content-Type: application/json")]
    NotJson,
    #[error("bad JSON: {0}")]
    BadJson(String),
}

/// Parses `body` as `T` if `content_type` is `application/json`.
pub fn parse<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, JsonBodyError> {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(JsonBodyError::NotJson);
    }
    serde_json::from_slice(body).map_err(|err| JsonBodyError::BadJson(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, warp::Error>> {
        futures_util::stream::iter(parts.iter().map(|part| Ok(Bytes::from_static(part))))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read_at_most(chunks(&[b"ab", b"cd"]), Some(4), 4).await;
        assert_eq!(body.expect("within the limit"), Bytes::from_static(b"abcd"));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_read_on_then_refused() {
        let refused = read_at_most(chunks(&[b"ab", b"cd", b"e"]), None, 4).await;
        let rejection = refused.expect_err("past the limit");
        assert!(rejection.find::<BodyTooLarge>().is_some(), "{rejection:?}");
    }

    #[tokio::test]
    async fn a_declared_length_past_what_is_drained_is_refused_unread() {
        let never_read = futures_util::stream::pending::<Result<Bytes, warp::Error>>();
        let refused = read_at_most(never_read, Some(4 + DRAIN_BYTES + 1), 4).await;
        assert!(
            refused
                .expect_err("too large")
                .find::<BodyTooLarge>()
                .is_some()
        );
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        name: String,
    }

    #[test]
    fn parses_json_with_a_charset() {
        let body = parse::<Body>(Some("application/json; charset=utf-8"), br#"{"name":"a"}"#);
        assert_eq!(body, Ok(Body { name: "a".into() }));
    }

    #[test]
    fn other_content_types_and_bad_json_are_errors() {
        assert_eq!(
            parse::<Body>(Some("text/plain"), b"{}"),
            Err(JsonBodyError::NotJson)
        );
        assert_eq!(parse::<Body>(None, b"{}"), Err(JsonBodyError::NotJson));
        assert!(matches!(
            parse::<Body>(Some("application/json"), b"{"),
            Err(JsonBodyError::BadJson(_))
        ));
    }
}
