//! Logging a session's user in at an edge, as an application's backend and
//! its page would: a connection token (a JWT, HS256) signed for the user
//! with the secret the edges share ([`TokenKey`]), exchanged at
//! `POST {url}/login/token` for the session cookie. A user logs in once
//! per URL ([`Logins`]); its sessions there share the cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rill_runtime::Secret;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::stats::now_us;
use crate::transport::http_error_kind;

/// The longest token lifetime the edges accept (their
/// `tokens.max_lifetime_secs` default).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Added to the connect timeout for a token's lifetime: the edges' clocks
/// may be a little ahead of this machine's.
const CLOCK_MARGIN_SECS: u64 = 300;

/// The key connection tokens are signed with: an HS256 secret of the
/// edges, and its key id if it has one. Travels to the workers in their
/// plan (a pipe); never in `Debug`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenKey {
    pub kid: Option<String>,
    pub secret: Secret,
}

impl TokenKey {
    /// A token for `user`, from `now_secs` (Unix seconds) for
    /// `lifetime_secs`, at most [`MAX_TOKEN_LIFETIME_SECS`].
    pub fn sign(&self, user: Uuid, now_secs: u64, lifetime_secs: u64) -> String {
        let exp = now_secs + lifetime_secs.min(MAX_TOKEN_LIFETIME_SECS);
        rill_auth::token::sign_hs256(
            self.kid.as_deref(),
            self.secret.expose().as_bytes(),
            &serde_json::json!({ "sub": user, "exp": exp }),
        )
    }
}

/// A user's session cookie at one URL, logged in once.
type CookieCell = Arc<OnceCell<String>>;

/// One worker's logins: the signing key and the cookies so far.
#[derive(Debug)]
pub struct Logins {
    key: TokenKey,
    /// A token is exchanged as soon as it is signed, within one connect:
    /// it needs to live for the connect timeout and the clocks' margin.
    lifetime_secs: u64,
    cookies: Mutex<HashMap<(Uuid, String), CookieCell>>,
}

impl Logins {
    /// Logins with tokens signed with `key`, for connects of at most
    /// `connect_timeout_secs`.
    pub fn new(key: TokenKey, connect_timeout_secs: f64) -> Self {
        Self {
            key,
            lifetime_secs: (connect_timeout_secs.ceil() as u64)
                .saturating_add(CLOCK_MARGIN_SECS)
                .min(MAX_TOKEN_LIFETIME_SECS),
            cookies: Mutex::default(),
        }
    }

    /// `user`'s `Cookie` header at `url`: logged in with a token the first
    /// time, the same cookie after. The error is the kind the worker
    /// counts (`login_http_401`, ...).
    pub async fn cookie(
        &self,
        http: &reqwest::Client,
        url: &str,
        user: Uuid,
    ) -> Result<String, String> {
        let cell = self
            .cookies
            .lock()
            .expect("cookies lock")
            .entry((user, url.to_owned()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.log_in(http, url, user))
            .await
            .cloned()
    }

    async fn log_in(
        &self,
        http: &reqwest::Client,
        url: &str,
        user: Uuid,
    ) -> Result<String, String> {
        let token = self
            .key
            .sign(user, now_us() / 1_000_000, self.lifetime_secs);
        let response = http
            .post(format!("{url}/login/token"))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .map_err(|e| format!("login_{}", http_error_kind(&e)))?;
        if !response.status().is_success() {
            return Err(format!("login_http_{}", response.status().as_u16()));
        }
        let cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_owned)
            .collect();
        Ok(cookies.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use rill_auth::token::{HmacKey, TokenSettings, TokenVerifier};

    use super::*;

    const SECRET: &str = "a-token-secret-of-at-least-32-bytes";

    /// A verifier as an edge's, with `SECRET` as key `kid`.
    fn edge(kid: &str) -> TokenVerifier {
        TokenVerifier::new(&TokenSettings {
            hs256_keys: vec![HmacKey {
                kid: kid.to_owned(),
                secret: Secret::new(SECRET),
            }],
            ..TokenSettings::default()
        })
        .expect("verifier")
    }

    fn key(kid: Option<&str>) -> TokenKey {
        TokenKey {
            kid: kid.map(str::to_owned),
            secret: Secret::new(SECRET),
        }
    }

    #[test]
    fn a_signed_token_names_the_user_for_the_edge() {
        let user = Uuid::new_v4();
        let now = 1_800_000_000;
        let at = UNIX_EPOCH + Duration::from_secs(now);
        for kid in [Some("load"), None] {
            let identity = edge("load")
                .verify(&key(kid).sign(user, now, 600), at)
                .expect("accepted");
            assert_eq!(identity.user.to_string(), user.to_string(), "kid {kid:?}");
            assert_eq!(identity.expires_at, at + Duration::from_secs(600));
        }
        assert!(
            edge("other")
                .verify(&key(Some("load")).sign(user, now, 600), at)
                .is_err(),
            "a kid the edge does not have"
        );
    }

    #[test]
    fn a_token_never_outlives_what_the_edge_accepts() {
        let user = Uuid::new_v4();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let token = key(None).sign(user, now, 10 * MAX_TOKEN_LIFETIME_SECS);
        let at = UNIX_EPOCH + Duration::from_secs(now);
        let identity = edge("load").verify(&token, at).expect("a day at most");
        assert_eq!(
            identity.expires_at,
            at + Duration::from_secs(MAX_TOKEN_LIFETIME_SECS)
        );
        let logins = Logins::new(key(None), 1e9);
        assert_eq!(logins.lifetime_secs, MAX_TOKEN_LIFETIME_SECS);
        let logins = Logins::new(key(None), 30.0);
        assert_eq!(logins.lifetime_secs, 30 + CLOCK_MARGIN_SECS);
    }

    #[test]
    fn the_secret_is_not_in_debug() {
        let logins = Logins::new(key(Some("load")), 30.0);
        let debug = format!("{logins:?}");
        assert!(!debug.contains(SECRET) && debug.contains("load"), "{debug}");
    }
}
