//! The settings of connection tokens: the keys, and what claims must say.

use std::path::PathBuf;
use std::time::Duration;

use rill_runtime::{Secret, SettingsError};
use serde::{Deserialize, Serialize};

/// The shortest HS256 secret accepted, in bytes: RFC 7518 §3.2 asks for a
/// key as long as the hash.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The longest `leeway_secs` accepted: a clock further off than this is
/// broken, not skewed, and a longer leeway would quietly stretch every
/// token's life.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Connection-token settings: which keys may sign a token and what its
/// claims must say. With no key configured, tokens are off
/// ([`TokenSettings::enabled`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Shared secrets for HS256, each with its key id. A token whose header
    /// has a `kid` uses that key; one without is tried against each, so a
    /// single key needs no kids in tokens. Default none.
    pub hs256_keys: Vec<HmacKey>,
    /// A PEM file of one or more public keys (`-----BEGIN PUBLIC KEY-----`
    /// blocks; RSA also as `RSA PUBLIC KEY`): RSA (RS256, 2048 to 8192
    /// bits), EC P-256 (ES256) or Ed25519 (EdDSA). PEM keys have no key
    /// ids: tokens for them carry no `kid` (for key ids, use `jwks_file`).
    /// Default none.
    pub public_keys_file: Option<PathBuf>,
    /// A JWKS document (RFC 7517, `{"keys": [...]}`) of public keys, each
    /// with a `kid`: RSA (RS256), EC P-256 (ES256), OKP Ed25519 (EdDSA).
    /// Default none.
    pub jwks_file: Option<PathBuf>,
    /// When set, a token's `aud` must name it. When not set, a token with
    /// an `aud` is refused (RFC 7519 §4.1.3: an audience that does not
    /// name us means the token is for someone else). Default none.
    pub audience: Option<String>,
    /// When set, a token's `iss` must be exactly this. Default none (any
    /// issuer, or none).
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and the lifetime, in seconds, at
    /// most 300. Default 30.
    #[serde(with = "rill_runtime::settings::secs")]
    pub leeway_secs: Duration,
    /// The longest life a token may have, in seconds: a token whose `exp`
    /// is further than this after its `iat` (or after now, when it has no
    /// `iat` or one in the future) is refused, so that a leaked long-lived
    /// token is no use. Default 86400 (a day).
    #[serde(with = "rill_runtime::settings::secs")]
    pub max_lifetime_secs: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            hs256_keys: Vec::new(),
            public_keys_file: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            leeway_secs: Duration::from_secs(30),
            max_lifetime_secs: Duration::from_secs(24 * 3600),
        }
    }
}

/// One HS256 secret and the key id tokens name it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacKey {
    /// The key id (`kid` in a token's header); unique among all keys.
    pub kid: String,
    /// The shared secret, used as its UTF-8 bytes (not base64-decoded), at
    /// least 32 bytes.
    pub secret: Secret,
}

impl TokenSettings {
    /// Whether any key is configured, that is, whether tokens are on.
    pub fn enabled(&self) -> bool {
        !self.hs256_keys.is_empty() || self.public_keys_file.is_some() || self.jwks_file.is_some()
    }

    /// Checks what types alone cannot say. The key files are read (and
    /// their contents checked) by [`TokenVerifier::new`](super::TokenVerifier::new).
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut kids = std::collections::HashSet::new();
        for key in &self.hs256_keys {
            if key.kid.is_empty() {
                return Err(SettingsError::invalid(
                    "token.hs256_keys",
                    "every key needs a non-empty kid",
                ));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(SettingsError::invalid(
                    "token.hs256_keys",
                    format!("kid {:?} is given twice", key.kid),
                ));
            }
            let len = key.secret.expose().len();
            if len < MIN_HMAC_SECRET_BYTES {
                return Err(SettingsError::invalid(
                    "token.hs256_keys",
                    format!(
                        "the secret of kid {:?} must be at least {MIN_HMAC_SECRET_BYTES} bytes, got {len}",
                        key.kid
                    ),
                ));
            }
        }
        if self
            .public_keys_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(SettingsError::invalid(
                "token.public_keys_file",
                "must not be empty (leave it out for none)",
            ));
        }
        if self
            .jwks_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(SettingsError::invalid(
                "token.jwks_file",
                "must not be empty (leave it out for none)",
            ));
        }
        if self.audience.as_ref().is_some_and(String::is_empty) {
            return Err(SettingsError::invalid(
                "token.audience",
                "must not be empty (leave it out to accept tokens without aud)",
            ));
        }
        if self.issuer.as_ref().is_some_and(String::is_empty) {
            return Err(SettingsError::invalid(
                "token.issuer",
                "must not be empty (leave it out to accept any issuer)",
            ));
        }
        if self.leeway_secs.as_secs() > MAX_LEEWAY_SECS {
            return Err(SettingsError::invalid(
                "token.leeway_secs",
                format!("must be at most {MAX_LEEWAY_SECS}"),
            ));
        }
        if self.max_lifetime_secs.is_zero() {
            return Err(SettingsError::invalid(
                "token.max_lifetime_secs",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET_A: &str = "test secret A, thirty-two bytes or more";
    const SECRET_B: &str = "test secret B, thirty-two bytes or more";

    fn hmac_key(kid: &str, secret: &str) -> HmacKey {
        HmacKey {
            kid: kid.into(),
            secret: Secret::new(secret),
        }
    }

    fn settings_a_and_b() -> TokenSettings {
        TokenSettings {
            hs256_keys: vec![hmac_key("a", SECRET_A), hmac_key("b", SECRET_B)],
            ..Default::default()
        }
    }

    #[test]
    fn settings_rules_name_the_field() {
        let field_of =
            |settings: TokenSettings| settings.validate().expect_err("invalid").to_string();
        let short = TokenSettings {
            hs256_keys: vec![hmac_key("a", &"x".repeat(MIN_HMAC_SECRET_BYTES - 1))],
            ..Default::default()
        };
        let err = field_of(short);
        assert!(
            err.contains("token.hs256_keys") && err.contains("at least 32 bytes, got 31"),
            "{err}"
        );
        let twice = TokenSettings {
            hs256_keys: vec![hmac_key("a", SECRET_A), hmac_key("a", SECRET_B)],
            ..Default::default()
        };
        assert!(field_of(twice).contains("kid \"a\" is given twice"));
        let no_kid = TokenSettings {
            hs256_keys: vec![hmac_key("", SECRET_A)],
            ..Default::default()
        };
        assert!(field_of(no_kid).contains("token.hs256_keys"));
        let leeway = TokenSettings {
            leeway_secs: Duration::from_secs(MAX_LEEWAY_SECS + 1),
            ..settings_a_and_b()
        };
        assert!(field_of(leeway).contains("token.leeway_secs"));
        let lifetime = TokenSettings {
            max_lifetime_secs: Duration::ZERO,
            ..settings_a_and_b()
        };
        assert!(field_of(lifetime).contains("token.max_lifetime_secs"));
        let audience = TokenSettings {
            audience: Some(String::new()),
            ..settings_a_and_b()
        };
        assert!(field_of(audience).contains("token.audience"));
        let issuer = TokenSettings {
            issuer: Some(String::new()),
            ..settings_a_and_b()
        };
        assert!(field_of(issuer).contains("token.issuer"));
        let file = TokenSettings {
            jwks_file: Some(PathBuf::new()),
            ..Default::default()
        };
        assert!(field_of(file).contains("token.jwks_file"));

        assert!(settings_a_and_b().validate().is_ok());
        assert!(TokenSettings::default().validate().is_ok());
    }

    #[test]
    fn settings_read_with_their_defaults_and_hide_secrets() {
        let settings: TokenSettings = serde_json::from_value(json!({
            "hs256_keys": [{ "kid": "a", "secret": SECRET_A }],
            "jwks_file": "/etc/rill/jwks.json",
        }))
        .expect("settings");
        assert!(settings.enabled());
        assert_eq!(settings.leeway_secs, Duration::from_secs(30));
        assert_eq!(settings.max_lifetime_secs, Duration::from_secs(86_400));
        assert_eq!(
            settings.jwks_file,
            Some(PathBuf::from("/etc/rill/jwks.json"))
        );
        assert!(!format!("{settings:?}").contains(SECRET_A));
        assert!(!TokenSettings::default().enabled());
        let typo = serde_json::from_value::<TokenSettings>(json!({ "leeway": 5 }));
        assert!(typo.is_err(), "unknown fields are refused");
    }
}
