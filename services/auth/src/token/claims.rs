//! What a verified token's claims must say: times against the caller's
//! `now` (with the leeway and the longest life), issuer, audience, and the
//! ids of the subject and of the profiles it is limited to.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_domain::{ProfileId, UserId};
use serde_json::{Map, Value};

use super::{Identity, TokenError, TokenSettings};

/// The rules of [`TokenSettings`] that claims are held to.
#[derive(Debug, Clone)]
pub(super) struct ClaimRules {
    audience: Option<String>,
    issuer: Option<String>,
    leeway_secs: u64,
    max_lifetime_secs: u64,
}

impl ClaimRules {
    pub(super) fn new(settings: &TokenSettings) -> Self {
        Self {
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            leeway_secs: settings.leeway_secs.as_secs(),
            max_lifetime_secs: settings.max_lifetime_secs.as_secs(),
        }
    }

    /// The identity in verified claims, if they hold at `now`.
    pub(super) fn identity(
        &self,
        claims: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Identity, TokenError> {
        let now = unix_secs(now);
        let exp = numeric_date(claims, "exp")?
            .ok_or(TokenError::Malformed("no exp: every token must expire"))?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if numeric_date(claims, "nbf")?
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway_secs))
        {
            return Err(TokenError::NotYetValid);
        }
        // An `iat` in the future would stretch the allowed life; count from now then.
        let issued = numeric_date(claims, "iat")?.map_or(now, |iat| iat.min(now));
        let latest_exp = issued
            .saturating_add(self.max_lifetime_secs)
            .saturating_add(self.leeway_secs);
        if exp > latest_exp {
            return Err(TokenError::TooLongLived {
                max_secs: self.max_lifetime_secs,
            });
        }
        self.check_issuer(claims)?;
        self.check_audience(claims)?;
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|sub| sub.parse::<UserId>().ok())
            .ok_or(TokenError::BadSubject(
                "sub must be a Rill user id (a UUID)",
            ))?;
        let profiles = match claims.get("profiles") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| item.as_str().and_then(|id| id.parse::<ProfileId>().ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(TokenError::BadSubject(
                        "profiles must be a list of profile ids (UUIDs)",
                    ))?,
            ),
            Some(_) => {
                return Err(TokenError::BadSubject(
                    "profiles must be a list of profile ids (UUIDs)",
                ));
            }
        };
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or(TokenError::Malformed("exp is out of range"))?;
        Ok(Identity {
            user,
            profiles,
            expires_at,
        })
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        match (&self.issuer, claims.get("iss")) {
            (None, _) => Ok(()),
            (Some(ours), Some(Value::String(theirs))) if theirs == ours => Ok(()),
            (Some(_), _) => Err(TokenError::WrongIssuer),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        let malformed = TokenError::Malformed("aud must be a string or a list of strings");
        let audiences: Vec<&str> = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or(malformed)?,
            Some(_) => return Err(malformed),
        };
        match &self.audience {
            Some(ours) if !audiences.contains(&ours.as_str()) => Err(TokenError::WrongAudience),
            None if !audiences.is_empty() => Err(TokenError::WrongAudience),
            _ => Ok(()),
        }
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, fractions
/// dropped. Absent or null: `None`.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    let malformed = TokenError::Malformed("exp, nbf and iat must be non-negative numbers");
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(malformed),
        Some(_) => Err(malformed),
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
