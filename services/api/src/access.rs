//! Who is calling, and whether they may: every route names its [`Rule`]
//! in `routes.rs`, and nothing reaches a handler before its rule held.
//!
//! Two kinds of caller:
//! - a **server** (the application's backend, an operator's script): an
//!   `X-Api-Key` header with one of the keys of `api_keys` (kept there as
//!   digests, compared in constant time);
//! - a **user**: the session cookie the edge or the api issued at login,
//!   whose login is still live in Redis (not logged out, not revoked).
//!
//! Without either: 401. A user where only a server may call, or outside
//! what is theirs (another user's profiles, a profile they are not a
//! member of): 403. A cookie request that changes something must come from
//! a page of the same site (`Origin`, see [`Credentials::same_site`]):
//! a cross-site form or script cannot act with the user's cookie.
//!
//! A server's calls are limited per key (`limits.calls_per_api_key`, a
//! token bucket per key name on each api instance): past it, 429 with
//! `Retry-After`, before anything else is done for the call.

use std::time::SystemTime;

use rill_domain::{ProfileId, UserId};
use rill_runtime::session_cookie::{CookieSession, SessionError};
use warp::Filter;
use warp::http::Method;

use crate::error::ApiError;
use crate::state::ApiState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, signed in or not (the OpenAPI document, sign-up, login).
    Anyone,
    /// A server (an API key) only.
    Server,
    /// Any signed-in user, or a server.
    SignedIn,
    /// The user named in the path, or a server.
    Oneself,
    /// A member of the profile in the path, or a server.
    Member,
}

impl Rule {
    /// How the OpenAPI document and the threat model name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anyone => "anyone",
            Self::Server => "server",
            Self::SignedIn => "signed_in",
            Self::Oneself => "oneself",
            Self::Member => "member",
        }
    }
}

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An API key, by its name in the settings.
    Server {
        key: String,
    },
    User(CookieSession),
}

/// What a request says about its caller, read from its headers.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    api_key: Option<String>,
    cookie: Option<String>,
    origin: Option<String>,
    host: Option<String>,
    /// GET and HEAD change nothing; anything else needs a same-site origin
    /// when it comes with a cookie.
    changes_state: bool,
}

/// Reads a request's [`Credentials`]; never rejects.
pub fn credentials()
-> impl Filter<Extract = (Credentials,), Error = std::convert::Infallible> + Clone {
    warp::header::optional::<String>("x-api-key")
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(warp::method())
        .map(
            |api_key, cookie, origin, host, method: Method| Credentials {
                api_key,
                cookie,
                origin,
                host,
                changes_state: !matches!(method, Method::GET | Method::HEAD),
            },
        )
        .recover(|_| async { Ok::<_, std::convert::Infallible>(Credentials::default()) })
        .unify()
}

impl Credentials {
    /// Whether a cookie request comes from a page of this site: its
    /// `Origin` is this host (as the browser reached it), or one of
    /// `allowed_origins`. Browsers send `Origin` with every request that
    /// is not a GET or HEAD; a request without one is refused, so a
    /// cookie-carrying client that is not a browser must send it too.
    fn same_site(&self, allowed_origins: &[String]) -> bool {
        self.origin.as_deref().is_some_and(|origin| {
            rill_runtime::origin::is_same_site(origin, self.host.as_deref(), allowed_origins)
        })
    }
}

/// Who is calling: an API key, or a cookie whose login is live.
pub async fn authenticate(state: &ApiState, credentials: &Credentials) -> Result<Caller, ApiError> {
    if let Some(presented) = credentials.api_key.as_deref() {
        let Some(name) = state.api_keys.check(presented) else {
            return Err(ApiError::BadApiKey);
        };
        let key = name.to_owned();
        if let Err(wait) = state.api_key_calls.try_take(&key) {
            tracing::info!(api_key = %key, wait_ms = wait.as_millis() as u64, "API key over its call rate");
            return Err(ApiError::RateLimited {
                retry_after_secs: rill_runtime::rate_limit::retry_after_secs(wait),
            });
        }
        return Ok(Caller::Server { key });
    }
    let session = state
        .cookies
        .verify(credentials.cookie.as_deref(), SystemTime::now())?;
    if !state.logins.is_live(session.user, session.login).await? {
        return Err(ApiError::Session(SessionError::Ended));
    }
    if credentials.changes_state && !credentials.same_site(&state.settings.allowed_origins) {
        return Err(ApiError::CrossSite);
    }
    Ok(Caller::User(session))
}

/// Checks that the caller of `credentials` may call a route with `rule`;
/// `path_id` is the route's first path parameter (the user or profile the
/// rule is about). Returns the caller.
pub async fn check(
    state: &ApiState,
    credentials: &Credentials,
    rule: Rule,
    path_id: Option<&str>,
) -> Result<Option<Caller>, ApiError> {
    if rule == Rule::Anyone {
        return Ok(None);
    }
    let caller = authenticate(state, credentials).await?;
    let session = match &caller {
        Caller::Server { .. } => return Ok(Some(caller)),
        Caller::User(session) => *session,
    };
    let allowed = match rule {
        Rule::Anyone | Rule::SignedIn => true,
        Rule::Server => false,
        Rule::Oneself => {
            let user: UserId = path_id.unwrap_or_default().parse()?;
            user == session.user
        }
        Rule::Member => {
            let profile: ProfileId = path_id.unwrap_or_default().parse()?;
            state.store().is_member(session.user, profile).await?
        }
    };
    if !allowed {
        return Err(ApiError::Forbidden(rule));
    }
    Ok(Some(caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_post(origin: Option<&str>, host: &str) -> Credentials {
        Credentials {
            cookie: Some("rill_session=x".into()),
            origin: origin.map(str::to_owned),
            host: Some(host.into()),
            changes_state: true,
            ..Credentials::default()
        }
    }

    #[test]
    fn a_cookie_request_without_an_origin_is_not_trusted() {
        let host = "chat.example:8080";
        assert!(cookie_post(Some("http://chat.example:8080"), host).same_site(&[]));
        assert!(!cookie_post(Some("https://evil.example"), host).same_site(&[]));
        assert!(
            !cookie_post(None, host).same_site(&[]),
            "no Origin, no trust"
        );
    }
}
