//! Keys of the server API, as Centrifugo and Pusher have them: an
//! application's backend presents one with each call.
//!
//! The settings hold only each key's SHA-256, never the key, so that a
//! leaked configuration leaks no key. `generate` makes a new key and
//! `digest` its SHA-256: the admin tool prints both, the key goes to the
//! backend and the digest to the settings. A key has 256 random bits, so
//! one unsalted, fast hash is enough: there is nothing to guess.

use std::collections::HashSet;
use std::fmt;

use rand::RngCore;
use rill_runtime::SettingsError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, CtOption};

/// What every generated key starts with, so that one is recognised in a
/// config file or a secret scanner.
pub const KEY_PREFIX: &str = "rk_";

/// Random bytes of a generated key.
const KEY_BYTES: usize = 32;

/// The keys the server API accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeySettings {
    /// The keys, each under its own name. Default none: no key is
    /// accepted (`ApiKeys::is_empty`); the service decides whether that
    /// stops it.
    pub keys: Vec<ApiKeyEntry>,
}

/// One key of the server API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds the key, for logs: non-empty, unique. No default.
    pub name: String,
    /// The key's SHA-256 as 64 hex digits (lowercase, as `digest` writes
    /// it), never the key itself. No default.
    pub sha256: String,
}

impl ApiKeySettings {
    /// Refuses empty or repeated names, and digests that are not 64 hex
    /// digits, repeat another's or are the digest of the empty key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.parse().map(drop)
    }

    /// The names and digests, checked.
    fn parse(&self) -> Result<Vec<(String, [u8; 32])>, SettingsError> {
        let empty_key = Sha256::digest(b"");
        let mut names = HashSet::new();
        let mut digests = HashSet::new();
        let mut keys = Vec::with_capacity(self.keys.len());
        for (index, entry) in self.keys.iter().enumerate() {
            let refuse = |reason: &str| {
                SettingsError::invalid(
                    "api_keys.keys",
                    format!("entry {index} ({:?}): {reason}", entry.name),
                )
            };
            if entry.name.trim().is_empty() {
                return Err(refuse("the name is empty"));
            }
            if !names.insert(entry.name.as_str()) {
                return Err(refuse("the name is repeated"));
            }
            let Some(digest) = parse_hex_digest(&entry.sha256) else {
                return Err(refuse(
                    "sha256 must be 64 hex digits: the SHA-256 of the key, not the key",
                ));
            };
            if digest == empty_key.as_slice() {
                return Err(refuse("sha256 is the digest of the empty key"));
            }
            if !digests.insert(digest) {
                return Err(refuse("sha256 is another entry's: one key, one name"));
            }
            keys.push((entry.name.clone(), digest));
        }
        Ok(keys)
    }
}

/// A new random key: `rk_` and 64 hex digits (32 random bytes).
pub fn generate() -> String {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", to_hex(&bytes))
}

/// A key's SHA-256 as 64 lowercase hex digits: what the settings hold.
pub fn digest(key: &str) -> String {
    to_hex(&Sha256::digest(key.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(digest)
}

/// Checks presented keys against the configured digests.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field(
                "names",
                &self.keys.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ApiKeys {
    /// From settings, which it validates.
    pub fn new(settings: &ApiKeySettings) -> Result<Self, SettingsError> {
        Ok(Self {
            keys: settings.parse()?,
        })
    }

    /// The name of the key `presented` is, if it is one. The presented key's
    /// digest is compared with every configured digest in constant time,
    /// without stopping at a match, so that timing tells nothing of which
    /// key, or how much of one, matched.
    pub fn check(&self, presented: &str) -> Option<&str> {
        if presented.is_empty() {
            return None;
        }
        let presented = Sha256::digest(presented.as_bytes());
        let mut found = Choice::from(0);
        let mut at = 0u64;
        for (index, (_, digest)) in self.keys.iter().enumerate() {
            let same = digest.as_slice().ct_eq(presented.as_slice());
            // Never more than a few keys: the index fits.
            at.conditional_assign(&u64::try_from(index).unwrap_or(u64::MAX), same);
            found |= same;
        }
        let at: Option<u64> = CtOption::new(at, found).into();
        let (name, _) = self.keys.get(usize::try_from(at?).ok()?)?;
        Some(name)
    }

    /// Whether no key is configured, so that none is accepted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: &str) -> ApiKeyEntry {
        ApiKeyEntry {
            name: name.into(),
            sha256: digest(key),
        }
    }

    fn keys(entries: Vec<ApiKeyEntry>) -> ApiKeys {
        ApiKeys::new(&ApiKeySettings { keys: entries }).expect("valid settings")
    }

    fn refusal(entries: Vec<ApiKeyEntry>) -> String {
        match (ApiKeySettings { keys: entries }).validate() {
            Err(SettingsError::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_generated_key_is_found_by_its_digest() {
        let key = generate();
        assert!(key.starts_with(KEY_PREFIX), "{key}");
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert_ne!(key, generate());
        let sha256 = digest(&key);
        assert_eq!(sha256.len(), 64);
        assert!(
            sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let keys = keys(vec![ApiKeyEntry {
            name: "backend".into(),
            sha256,
        }]);
        assert_eq!(keys.check(&key), Some("backend"));
        assert!(!keys.is_empty());
    }

    #[test]
    fn digest_is_sha256_in_lowercase_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn other_keys_are_refused() {
        let key = generate();
        let keys = keys(vec![entry("backend", &key)]);
        let mut last_changed = key.clone();
        let last = last_changed.pop().expect("a key is not empty");
        last_changed.push(if last == '0' { '1' } else { '0' });
        for wrong in [
            generate(),
            String::new(),
            last_changed,
            key[..key.len() - 1].to_owned(),
            format!("{key} "),
            digest(&key),
        ] {
            assert_eq!(keys.check(&wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn each_of_two_keys_is_found_under_its_name() {
        let (first, second) = (generate(), generate());
        let keys = keys(vec![entry("billing", &first), entry("chat-bot", &second)]);
        assert_eq!(keys.check(&first), Some("billing"));
        assert_eq!(keys.check(&second), Some("chat-bot"));
        assert_eq!(keys.check(&generate()), None);
    }

    #[test]
    fn no_keys_accept_nothing() {
        let keys = keys(Vec::new());
        assert!(keys.is_empty());
        assert_eq!(keys.check(&generate()), None);
        assert_eq!(keys.check(""), None);
    }

    #[test]
    fn settings_refuse_what_is_not_a_digest() {
        let key = generate();
        for sha256 in [
            key.clone(),
            digest(&key)[..63].to_owned(),
            format!("{}0", digest(&key)),
            format!("{}g", &digest(&key)[..63]),
            format!("+{}", &digest(&key)[..63]),
            String::new(),
        ] {
            let refused = refusal(vec![ApiKeyEntry {
                name: "backend".into(),
                sha256,
            }]);
            assert!(refused.contains("64 hex digits"), "{refused}");
        }
        let upper = ApiKeyEntry {
            name: "backend".into(),
            sha256: digest(&key).to_uppercase(),
        };
        assert_eq!(keys(vec![upper]).check(&key), Some("backend"));
        assert!(refusal(vec![entry("backend", "")]).contains("empty key"));
    }

    #[test]
    fn settings_refuse_empty_and_repeated_names_and_repeated_keys() {
        let refused = refusal(vec![entry(" ", &generate())]);
        assert!(refused.contains("name is empty"), "{refused}");
        let refused = refusal(vec![
            entry("backend", &generate()),
            entry("backend", &generate()),
        ]);
        assert!(refused.starts_with("api_keys.keys: entry 1"), "{refused}");
        assert!(refused.contains("name is repeated"), "{refused}");
        let key = generate();
        let refused = refusal(vec![entry("billing", &key), entry("chat-bot", &key)]);
        assert!(refused.contains("another entry's"), "{refused}");
        assert!(ApiKeys::new(&ApiKeySettings::default()).is_ok());
    }

    #[test]
    fn debug_shows_names_only() {
        let key = generate();
        let printed = format!("{:?}", keys(vec![entry("backend", &key)]));
        assert!(printed.contains("backend"), "{printed}");
        assert!(!printed.contains(&digest(&key)), "{printed}");
    }
}
