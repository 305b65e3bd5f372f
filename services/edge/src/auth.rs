//! Who opens a stream or sends: a session cookie whose login is still live
//! (checked in Redis), or a connection token that an application's backend
//! signed for its user (`Authorization: Bearer`, or `?token=` for browsers,
//! which cannot set headers on a WebSocket or an EventSource). A token can
//! also be exchanged for the session cookie (`POST /login/token`).

use std::time::SystemTime;

use rill_auth::token::{TokenError, TokenVerifier};
use rill_domain::{LoginId, ProfileId, UserId};
use rill_runtime::session_cookie::{CookieSession, SessionCookies, SessionError};
use rill_sessions::{Logins, SessionsError};

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    /// The login a cookie stands for; none with a connection token.
    pub login: Option<LoginId>,
    /// The profiles a connection token is limited to; `None`: no limit
    /// beyond the user's memberships.
    pub profiles: Option<Vec<ProfileId>>,
}

impl Identity {
    /// Whether the credentials allow `profile` (membership aside).
    pub fn may_use(&self, profile: ProfileId) -> bool {
        self.profiles
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&profile))
    }
}

/// What a request presents: its `Cookie` and `Authorization` headers and
/// its `token` query parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub cookie: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub token: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// A bearer token from the header, else from the query.
    pub(crate) fn bearer(&self) -> Option<&'a str> {
        let header = self.authorization.and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        header.or(self.token)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A token was presented, but this edge has no token keys.
    #[error("this edge accepts no connection tokens (no keys in its settings)")]
    TokensOff,
    #[error("the login store (Redis) failed: {0}")]
    Logins(#[from] SessionsError),
}

/// Checks cookies and tokens.
#[derive(Debug)]
pub struct Authenticator {
    pub cookies: SessionCookies,
    logins: Logins,
    tokens: Option<TokenVerifier>,
}

impl Authenticator {
    pub fn new(cookies: SessionCookies, logins: Logins, tokens: Option<TokenVerifier>) -> Self {
        Self {
            cookies,
            logins,
            tokens,
        }
    }

    /// Who presents `credentials`: a token if there is one (a bad token is
    /// refused, not passed over for the cookie), else the cookie.
    pub async fn identify(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        if let Some(token) = credentials.bearer() {
            return self.verify_token(token);
        }
        let session = self.cookies.verify(credentials.cookie, SystemTime::now())?;
        if !self.logins.is_live(session.user, session.login).await? {
            return Err(SessionError::Ended.into());
        }
        Ok(Identity {
            user: session.user,
            login: Some(session.login),
            profiles: None,
        })
    }

    fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let verifier = self.tokens.as_ref().ok_or(AuthError::TokensOff)?;
        let verified = verifier.verify(token, SystemTime::now())?;
        Ok(Identity {
            user: verified.user,
            login: None,
            profiles: verified.profiles,
        })
    }

    /// Starts a login for the user of `token` (a session cookie from a
    /// connection token); the `Set-Cookie` value. The cookie is not limited
    /// to the token's profiles: exchange tokens without a `profiles` claim.
    pub async fn exchange(&self, token: &str) -> Result<(UserId, String), AuthError> {
        let identity = self.verify_token(token)?;
        let login = self.logins.start(identity.user).await?;
        let session = CookieSession {
            user: identity.user,
            login,
        };
        Ok((
            identity.user,
            self.cookies.issue(session, SystemTime::now()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_header_comes_before_the_query_and_other_schemes_do_not_count() {
        let both = Credentials {
            authorization: Some("Bearer header-token"),
            token: Some("query-token"),
            ..Credentials::default()
        };
        assert_eq!(both.bearer(), Some("header-token"));
        let lower = Credentials {
            authorization: Some("bearer abc"),
            ..Credentials::default()
        };
        assert_eq!(lower.bearer(), Some("abc"));
        let basic = Credentials {
            authorization: Some("Basic dXNlcjpwYXNz"),
            ..Credentials::default()
        };
        assert_eq!(basic.bearer(), None);
        let query = Credentials {
            token: Some("query-token"),
            ..Credentials::default()
        };
        assert_eq!(query.bearer(), Some("query-token"));
    }

    #[test]
    fn a_token_limited_to_profiles_allows_only_those() {
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let limited = Identity {
            user: UserId::random(),
            login: None,
            profiles: Some(vec![p]),
        };
        assert!(limited.may_use(p));
        assert!(!limited.may_use(q));
        let open = Identity {
            profiles: None,
            ..limited
        };
        assert!(open.may_use(q));
    }
}
