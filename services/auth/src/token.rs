//! Connection tokens: JWTs that an application's backend signs for one of
//! its users, and that an edge verifies before it opens a stream (the model
//! of Centrifugo and Pusher: Rill never sees the application's own login).
//!
//! A token names the Rill user in `sub` (a UUID), must carry `exp`, and may
//! limit itself to some profiles with a `profiles` claim (a list of profile
//! ids). Four algorithms are verified, one per kind of key, and a token's
//! `alg` must be its key's: HS256 (shared secrets), RS256 (RSA), ES256
//! (P-256) and EdDSA (Ed25519). Several keys can be configured at once, so
//! keys rotate without a flag day: a token picks its key by `kid`, and a
//! token without `kid` is tried against every key of its algorithm.
//!
//! jsonwebtoken only checks signatures; the claims are read by `claims`,
//! against the `now` the caller passes (not the machine's clock, so tests
//! drive it). The modules:
//!
//! - this file: the verifier (which key, which algorithm), [`Identity`],
//!   [`TokenError`], [`sign_hs256`];
//! - `settings`: [`TokenSettings`], re-exported here;
//! - `keys`: reading and checking the PEM and JWKS files, once, in
//!   [`TokenVerifier::new`];
//! - `claims`: what the claims must say.

use std::path::PathBuf;
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rill_domain::{ProfileId, UserId};
use rill_runtime::SettingsError;
use serde::Deserialize;
use serde_json::{Map, Value};

mod claims;
mod keys;
mod settings;

use claims::ClaimRules;
pub use settings::{HmacKey, MAX_LEEWAY_SECS, MIN_HMAC_SECRET_BYTES, TokenSettings};

/// The longest token read, in bytes. Tokens travel in a query string or a
/// header; a bound keeps a hostile one from costing more than a glance.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Rill user (`sub`).
    pub user: UserId,
    /// The profiles the token is limited to (`profiles`); `None`: no limit
    /// beyond the user's memberships. An empty list allows none.
    pub profiles: Option<Vec<ProfileId>>,
    /// When the token expires (`exp`, without the leeway).
    pub expires_at: SystemTime,
}

/// Why a token was refused, or why the keys could not be loaded.
///
/// Every variant but [`TokenError::KeyFile`] and [`TokenError::Settings`]
/// is about the client's token (HTTP 401 at the transport); those two only
/// come from [`TokenVerifier::new`], at start-up. Messages never hold the
/// token nor any of its values.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token names a key (kid) that this server does not have")]
    UnknownKey,
    #[error("the token is for another audience (aud)")]
    WrongAudience,
    #[error("the token is from another issuer (iss)")]
    WrongIssuer,
    #[error("the token's subject is not valid: {0}")]
    BadSubject(&'static str),
    #[error("the token lives longer than this server accepts ({max_secs} s from iat to exp)")]
    TooLongLived { max_secs: u64 },
    #[error(
        "the token's algorithm (alg) is not allowed: it must be HS256, RS256, ES256 or EdDSA, and its key's"
    )]
    AlgorithmNotAllowed,
    #[error("bad token keys: {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl TokenError {
    /// A stable code for clients (and for the start-up errors, for logs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "token_malformed",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::BadSignature => "token_bad_signature",
            Self::UnknownKey => "token_unknown_key",
            Self::WrongAudience => "token_wrong_audience",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::BadSubject(_) => "token_bad_subject",
            Self::TooLongLived { .. } => "token_too_long_lived",
            Self::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::KeyFile { .. } => "token_key_file",
            Self::Settings(_) => "token_settings",
        }
    }
}

/// Verifies connection tokens against the configured keys. Built once at
/// start-up; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: Vec<VerifyingKey>,
    rules: ClaimRules,
}

/// One configured key: the only algorithm it verifies, and its id if it
/// has one (PEM keys have none).
#[derive(Debug, Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl VerifyingKey {
    fn new(kid: Option<String>, algorithm: Algorithm, key: DecodingKey) -> Self {
        // Only the signature: the claims are read by `ClaimRules::identity`
        // against the caller's `now`, which jsonwebtoken cannot take.
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self {
            kid,
            algorithm,
            key,
            validation,
        }
    }

    /// The token's claims, if this key signed it.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_) => {
                    TokenError::Malformed("its parts are not base64url JSON objects")
                }
                // The signature, or a signature this key cannot have made
                // (an ECDSA one of the wrong length, say).
                _ => TokenError::BadSignature,
            })
    }
}

impl TokenVerifier {
    /// Checks the settings and reads the key files. Without any key, every
    /// token is refused.
    pub fn new(settings: &TokenSettings) -> Result<Self, TokenError> {
        settings.validate()?;
        let mut keys = Vec::new();
        for hmac in &settings.hs256_keys {
            let key = DecodingKey::from_secret(hmac.secret.expose().as_bytes()).map_err(|_| {
                SettingsError::invalid("token.hs256_keys", "a secret is not a valid HMAC key")
            })?;
            keys.push(VerifyingKey::new(
                Some(hmac.kid.clone()),
                Algorithm::HS256,
                key,
            ));
        }
        if let Some(path) = &settings.public_keys_file {
            keys.extend(keys::read_pem_file(path)?);
        }
        if let Some(path) = &settings.jwks_file {
            for key in keys::read_jwks_file(path)? {
                if keys.iter().any(|k| k.kid.is_some() && k.kid == key.kid) {
                    return Err(TokenError::KeyFile {
                        path: path.clone(),
                        reason: format!(
                            "kid {:?} is also the kid of a key in token.hs256_keys",
                            key.kid.unwrap_or_default()
                        ),
                    });
                }
                keys.push(key);
            }
        }
        Ok(Self {
            keys,
            rules: ClaimRules::new(settings),
        })
    }

    /// Who `token` speaks for, if one of our keys signed it and its claims
    /// hold at `now`. Every error is the client's (HTTP 401).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 8 KiB"));
        }
        let header = read_header(token)?;
        let algorithm = allowed_algorithm(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        let claims = self.verify_signature(token, algorithm, header.kid.as_deref())?;
        self.rules.identity(&claims, now)
    }

    fn verify_signature(
        &self,
        token: &str,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<Map<String, Value>, TokenError> {
        if let Some(kid) = kid {
            let key = self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or(TokenError::UnknownKey)?;
            // The key decides the algorithm, never the token: an RSA key's
            // public half must not be taken for an HS256 secret.
            if key.algorithm != algorithm {
                return Err(TokenError::AlgorithmNotAllowed);
            }
            return key.verify(token);
        }
        let mut candidates = self
            .keys
            .iter()
            .filter(|key| key.algorithm == algorithm)
            .peekable();
        if candidates.peek().is_none() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        for key in candidates {
            match key.verify(token) {
                Err(TokenError::BadSignature) => continue,
                verified_or_malformed => return verified_or_malformed,
            }
        }
        Err(TokenError::BadSignature)
    }
}

/// Signs `claims` with HS256 and `secret`, with `kid` in the header when
/// given. For tests, the load generator and example backends: a real
/// application signs its tokens with its own JWT library.
///
/// # Panics
///
/// When `secret` is empty, which no configured key can be.
pub fn sign_hs256(kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    EncodingKey::from_secret(secret)
        .and_then(|key| jsonwebtoken::encode(&header, claims, &key))
        .expect("HS256 signs any JSON with a non-empty secret")
}

/// The header fields read before a key is chosen. jsonwebtoken's own header
/// type fails to parse an algorithm it does not know (`none`), which would
/// hide a refused algorithm behind "malformed".
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn read_header(token: &str) -> Result<RawHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let json =
        base64url_decode(header).ok_or(TokenError::Malformed("the header is not base64url"))?;
    serde_json::from_slice(&json)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object with an alg"))
}

/// The one algorithm verified for each kind of key.
fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Base64url without padding (RFC 7515 §2). Only the header is decoded
/// here; jsonwebtoken decodes the rest.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // One character left over (6 bits) cannot end a base64 text.
    (count < 6).then_some(out)
}

#[cfg(test)]
mod tests;
