//! Where messages enter and leave: thin adapters between the client's
//! connection and a live session (see `session`) and the publisher.
//!
//! - [`websocket`]: `GET /live/{profile}/ws`, sends and receives.
//! - [`sse`]: `GET /live/{profile}/sse`, receives only.
//! - [`http`]: `POST /live/{profile}/messages` (sends for SSE clients),
//!   `POST /login`, `POST /logout`.

pub mod http;
pub mod sse;
pub mod websocket;

use std::time::SystemTime;

use rill_domain::UserId;

use crate::app::EdgeState;
use crate::error::EdgeError;

/// The caller's user, from the session cookie in `cookie_header`.
pub fn authenticate(state: &EdgeState, cookie_header: Option<&str>) -> Result<UserId, EdgeError> {
    Ok(state.cookies.verify(cookie_header, SystemTime::now())?)
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
    use super::query_param;

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("last_id=abc&x=1", "last_id"), Some("abc"));
        assert_eq!(query_param("x=1&last_id=abc", "last_id"), Some("abc"));
        assert_eq!(query_param("last_id=", "last_id"), None);
        assert_eq!(query_param("", "last_id"), None);
        assert_eq!(query_param("last_idx=1", "last_id"), None);
    }
}
