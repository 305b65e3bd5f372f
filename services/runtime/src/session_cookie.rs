//! The session cookie: who the client is and which of their logins this
//! is, signed with the cluster's key so that every edge and the api can
//! check it without asking anyone; whether the login is still live is
//! asked of Redis (`rill_sessions::Logins`) by the caller.
//!
//! The value is `v2.<user id>.<login id>.<expiry in Unix seconds>`, signed
//! (HMAC-SHA256) by the `cookie` crate's signed jar. The expiry is inside
//! the signed value, so a client cannot extend it by editing the cookie's
//! attributes. Cookies are signed with `cookie_key` and accepted when
//! signed with it or one of `previous_cookie_keys`: a key is rotated by
//! moving it to the previous keys for one `ttl_secs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieJar, Key, SameSite};
use rill_domain::{LoginId, UserId};
use serde::{Deserialize, Serialize};

use crate::settings::{Secret, SettingsError};

/// The shortest cookie key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 64;

/// Session cookie settings, shared by the edge and the api.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// The signing key, at least 64 bytes. No default: required outside dev
    /// mode; in dev mode a random key is made at start (sessions then do
    /// not survive a restart, nor move between edges).
    pub cookie_key: Option<Secret>,
    /// Keys cookies were signed with before `cookie_key`, still accepted
    /// (never used to sign): a rotated key stays here for one `ttl_secs`.
    /// Default none.
    pub previous_cookie_keys: Vec<Secret>,
    /// The cookie's name. Default `rill_session`; with `secure`, the
    /// browser is sent `__Host-` and this name (a cookie bound to the exact
    /// host, HTTPS only, that a subdomain cannot set).
    pub cookie_name: String,
    /// How long a session lasts after login, in seconds. Default 604800 (7 days).
    #[serde(with = "crate::settings::secs")]
    pub ttl_secs: Duration,
    /// Served over TLS: mark the cookie `Secure` (HTTPS only) and give it
    /// the `__Host-` prefix. Default false.
    pub secure: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cookie_key: None,
            previous_cookie_keys: Vec::new(),
            cookie_name: "rill_session".into(),
            ttl_secs: Duration::from_secs(7 * 24 * 3600),
            secure: false,
        }
    }
}

impl SessionSettings {
    /// Checks the key (when one is given) and the other fields.
    pub fn validate(&self, dev_mode: bool) -> Result<(), SettingsError> {
        match &self.cookie_key {
            None if !dev_mode => Err(SettingsError::invalid(
                "session.cookie_key",
                "required outside dev mode (set RILL_SESSION__COOKIE_KEY to 64 or more random bytes)",
            )),
            Some(key) if key.expose().len() < MIN_KEY_BYTES => Err(SettingsError::invalid(
                "session.cookie_key",
                format!(
                    "must be at least {MIN_KEY_BYTES} bytes, got {}",
                    key.expose().len()
                ),
            )),
            _ if self
                .previous_cookie_keys
                .iter()
                .any(|key| key.expose().len() < MIN_KEY_BYTES) =>
            {
                Err(SettingsError::invalid(
                    "session.previous_cookie_keys",
                    format!("each must be at least {MIN_KEY_BYTES} bytes"),
                ))
            }
            _ if self.cookie_name.is_empty() || !self.cookie_name.bytes().all(is_token_byte) => {
                Err(SettingsError::invalid(
                    "session.cookie_name",
                    "must be a non-empty cookie token",
                ))
            }
            _ if self.ttl_secs.is_zero() => Err(SettingsError::invalid(
                "session.ttl_secs",
                "must be above 0",
            )),
            _ => Ok(()),
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why a request has no valid session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("no session cookie: log in first")]
    Missing,
    #[error("the session cookie is not valid")]
    Invalid,
    #[error("the session has expired: log in again")]
    Expired,
    /// Signed and unexpired, but its login was ended (logout, revoked).
    #[error("the session was ended: log in again")]
    Ended,
}

/// What a valid session cookie says: whose it is and which login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieSession {
    pub user: UserId,
    pub login: LoginId,
}

/// Issues and checks session cookies.
#[derive(Clone)]
pub struct SessionCookies {
    key: Key,
    previous_keys: Vec<Key>,
    name: String,
    ttl: Duration,
    secure: bool,
}

impl std::fmt::Debug for SessionCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCookies")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SessionCookies {
    /// From validated settings. Without a key (dev mode), a random one.
    pub fn new(settings: &SessionSettings) -> Result<Self, SettingsError> {
        let key = match &settings.cookie_key {
            Some(secret) => Key::try_from(secret.expose().as_bytes()).map_err(|_| {
                SettingsError::invalid("session.cookie_key", "must be at least 64 bytes")
            })?,
            None => {
                tracing::warn!("no session.cookie_key: using a random key (dev mode only)");
                Key::generate()
            }
        };
        let previous_keys = settings
            .previous_cookie_keys
            .iter()
            .map(|secret| {
                Key::try_from(secret.expose().as_bytes()).map_err(|_| {
                    SettingsError::invalid(
                        "session.previous_cookie_keys",
                        "each must be at least 64 bytes",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let name = match settings.secure {
            true => format!("__Host-{}", settings.cookie_name),
            false => settings.cookie_name.clone(),
        };
        Ok(Self {
            key,
            previous_keys,
            name,
            ttl: settings.ttl_secs,
            secure: settings.secure,
        })
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a cookie (and so a login) lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A `Set-Cookie` header value for `login` of `user`, until now + ttl.
    pub fn issue(&self, session: CookieSession, now: SystemTime) -> String {
        let expires = unix_secs(now) + self.ttl.as_secs();
        let CookieSession { user, login } = session;
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(Cookie::new(
            self.name.clone(),
            format!("v2.{user}.{login}.{expires}"),
        ));
        let signed = jar
            .get(&self.name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        Cookie::build((self.name.clone(), signed))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .max_age(cookie::time::Duration::seconds(self.ttl.as_secs() as i64))
            .build()
            .to_string()
    }

    /// A `Set-Cookie` header value that logs out.
    pub fn clear(&self) -> String {
        Cookie::build((self.name.clone(), ""))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }

    /// The session of a request with this `Cookie` header, if its session
    /// cookie is signed with our key (or a previous one) and not expired.
    /// Whether its login is still live is for the caller to ask.
    pub fn verify(
        &self,
        cookie_header: Option<&str>,
        now: SystemTime,
    ) -> Result<CookieSession, SessionError> {
        let raw = cookie_header
            .into_iter()
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == self.name)
            .ok_or(SessionError::Missing)?;
        let mut jar = CookieJar::new();
        jar.add_original(raw.into_owned());
        let verified = std::iter::once(&self.key)
            .chain(&self.previous_keys)
            .find_map(|key| jar.signed(key).get(&self.name))
            .ok_or(SessionError::Invalid)?;
        let (session, expires) = parse_value(verified.value()).ok_or(SessionError::Invalid)?;
        if unix_secs(now) >= expires {
            return Err(SessionError::Expired);
        }
        Ok(session)
    }
}

fn parse_value(value: &str) -> Option<(CookieSession, u64)> {
    let mut parts = value.strip_prefix("v2.")?.split('.');
    let user = parts.next()?.parse().ok()?;
    let login = parts.next()?.parse().ok()?;
    let expires = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((CookieSession { user, login }, expires))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(key: &str) -> SessionCookies {
        let settings = SessionSettings {
            cookie_key: Some(Secret::new(key)),
            ..Default::default()
        };
        SessionCookies::new(&settings).expect("valid key")
    }

    fn header_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().expect("name=value").to_owned()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn session() -> CookieSession {
        CookieSession {
            user: UserId::random(),
            login: LoginId::random(),
        }
    }

    #[test]
    fn an_issued_cookie_verifies_as_its_login() {
        let c = cookies(KEY);
        let session = session();
        let now = SystemTime::now();
        let set = c.issue(session, now);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "not over TLS: {set}");
        assert_eq!(c.verify(Some(&header_of(&set)), now), Ok(session));
    }

    #[test]
    fn over_tls_the_cookie_is_secure_and_host_bound() {
        let settings = SessionSettings {
            cookie_key: Some(Secret::new(KEY)),
            secure: true,
            ..Default::default()
        };
        let c = SessionCookies::new(&settings).expect("valid");
        let set = c.issue(session(), SystemTime::now());
        assert!(set.starts_with("__Host-rill_session="), "{set}");
        assert!(set.contains("Secure") && set.contains("Path=/"), "{set}");
        assert!(!set.contains("Domain"), "{set}");
    }

    #[test]
    fn a_cookie_signed_with_a_previous_key_still_verifies() {
        let old = cookies(KEY);
        let new_key = KEY.replace('0', "n");
        let rotated = SessionCookies::new(&SessionSettings {
            cookie_key: Some(Secret::new(&new_key)),
            previous_cookie_keys: vec![Secret::new(KEY)],
            ..Default::default()
        })
        .expect("valid");
        let now = SystemTime::now();
        let session = session();
        let from_before = header_of(&old.issue(session, now));
        assert_eq!(rotated.verify(Some(&from_before), now), Ok(session));
        let without_old = cookies(&new_key);
        assert_eq!(
            without_old.verify(Some(&from_before), now),
            Err(SessionError::Invalid),
            "once the old key is dropped, its cookies are not valid"
        );
    }

    #[test]
    fn other_cookies_in_the_header_do_not_matter() {
        let c = cookies(KEY);
        let session = session();
        let header = format!(
            "a=b; {}; rill_edge=xyz",
            header_of(&c.issue(session, SystemTime::now()))
        );
        assert_eq!(c.verify(Some(&header), SystemTime::now()), Ok(session));
    }

    #[test]
    fn missing_forged_and_expired_cookies_are_refused() {
        let c = cookies(KEY);
        let now = SystemTime::now();
        assert_eq!(c.verify(None, now), Err(SessionError::Missing));
        assert_eq!(c.verify(Some("other=1"), now), Err(SessionError::Missing));
        let forged = format!(
            "rill_session=v2.{}.{}.99999999999",
            UserId::random(),
            LoginId::random()
        );
        assert_eq!(c.verify(Some(&forged), now), Err(SessionError::Invalid));
        let other_key = cookies(&KEY.replace('0', "x"));
        let foreign = header_of(&other_key.issue(session(), now));
        assert_eq!(c.verify(Some(&foreign), now), Err(SessionError::Invalid));
        let old = header_of(&c.issue(session(), now - Duration::from_secs(8 * 24 * 3600)));
        assert_eq!(c.verify(Some(&old), now), Err(SessionError::Expired));
    }

    #[test]
    fn key_rules_name_the_field() {
        let short = SessionSettings {
            cookie_key: Some(Secret::new("short")),
            ..Default::default()
        };
        let err = short.validate(false).expect_err("too short");
        assert!(err.to_string().contains("session.cookie_key"), "{err}");
        let none = SessionSettings::default();
        assert!(
            none.validate(false).is_err(),
            "a key is required outside dev mode"
        );
        assert!(
            none.validate(true).is_ok(),
            "dev mode may run without a key"
        );
    }
}
