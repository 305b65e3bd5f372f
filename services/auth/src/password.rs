//! Passwords of the browser client's accounts: the rules a new password
//! must meet, and its argon2id hash as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), which carries its own
//! parameters so that they can change over time.
//!
//! Hashing and verifying are CPU-bound on purpose (tens of milliseconds
//! with the default parameters): callers run them on
//! `tokio::task::spawn_blocking`, never on an async worker. `Passwords` is
//! cheap to clone for that.

use std::fmt;

use argon2::password_hash::SaltString;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier,
    RECOMMENDED_SALT_LEN, Version,
};
use rand::RngCore;
use rill_runtime::SettingsError;
use serde::{Deserialize, Serialize};

/// The shortest `min_length` the settings accept, in characters.
pub const MIN_MIN_LENGTH: usize = 8;

/// Password rules and argon2id parameters, shared by whoever hashes or
/// verifies passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordSettings {
    /// Memory of one hash, in KiB. Default 19456 (19 MiB), OWASP's minimum
    /// for argon2id with 2 iterations.
    pub memory_kib: u32,
    /// Passes over that memory. Default 2.
    pub iterations: u32,
    /// Lanes of one hash. Default 1: a server hashes many passwords at
    /// once, so it gains nothing from splitting one.
    pub parallelism: u32,
    /// The fewest characters of a new password. Default 8, the least
    /// accepted.
    pub min_length: usize,
    /// The most characters of a new password. Default 256: what is hashed
    /// stays bounded.
    pub max_length: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
            min_length: 8,
            max_length: 256,
        }
    }
}

impl PasswordSettings {
    /// Refuses parameters that argon2 refuses, and length rules that are too
    /// weak or cannot be met.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.params()?;
        if self.min_length < MIN_MIN_LENGTH {
            return Err(SettingsError::invalid(
                "password.min_length",
                format!("must be at least {MIN_MIN_LENGTH}"),
            ));
        }
        if self.max_length < self.min_length {
            return Err(SettingsError::invalid(
                "password.max_length",
                format!("must be at least min_length ({})", self.min_length),
            ));
        }
        Ok(())
    }

    fn params(&self) -> Result<Params, SettingsError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|error| {
            let field = match error {
                argon2::Error::TimeTooSmall => "password.iterations",
                argon2::Error::ThreadsTooFew | argon2::Error::ThreadsTooMany => {
                    "password.parallelism"
                }
                _ => "password.memory_kib",
            };
            SettingsError::invalid(
                field,
                format!(
                    "argon2 refuses m={} KiB, t={}, p={}: {error} (memory must be at least 8 KiB per lane)",
                    self.memory_kib, self.iterations, self.parallelism
                ),
            )
        })
    }
}

/// A password as the client sent it. It can be read from JSON but never
/// written, printed or logged: no `Serialize`, no `Display`, and `Debug`
/// shows `Password(***)`.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password's text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Checks the rules of a new password: its length in characters, and no
    /// control characters (NUL, newlines...) nor only whitespace. Logging in
    /// does not check them, so that changing the rules locks no one out.
    pub fn check(&self, settings: &PasswordSettings) -> Result<(), PasswordError> {
        let length = self.0.chars().count();
        if length < settings.min_length {
            return Err(PasswordError::TooShort {
                min: settings.min_length,
            });
        }
        if length > settings.max_length {
            return Err(PasswordError::TooLong {
                max: settings.max_length,
            });
        }
        if self.0.chars().any(char::is_control) {
            return Err(PasswordError::Invalid(
                "it must not contain control characters",
            ));
        }
        if self.0.chars().all(char::is_whitespace) {
            return Err(PasswordError::Invalid("it must not be only whitespace"));
        }
        Ok(())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Why a password could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is too short: at least {min} characters")]
    TooShort { min: usize },
    #[error("the password is too long: at most {max} characters")]
    TooLong { max: usize },
    #[error("the password is not valid: {0}")]
    Invalid(&'static str),
    /// A fault of the server, not of the password.
    #[error("hashing the password failed: {0}")]
    Hashing(#[from] argon2::password_hash::Error),
}

impl PasswordError {
    /// A stable name, for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "password_too_short",
            Self::TooLong { .. } => "password_too_long",
            Self::Invalid(_) => "password_invalid",
            Self::Hashing(_) => "password_hashing_failed",
        }
    }
}

/// Hashes and verifies passwords with the settings' parameters.
#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    settings: PasswordSettings,
    /// A hash made at start-up with the same parameters, which
    /// `verify_nothing` verifies against.
    dummy: String,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// From settings, which it validates; hashes the dummy password (one
    /// hash's time).
    pub fn new(settings: &PasswordSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, settings.params()?);
        let mut passwords = Self {
            argon2,
            settings: settings.clone(),
            dummy: String::new(),
        };
        passwords.dummy = passwords
            .hash_unchecked(&Password::new("no such account, no such password"))
            .map_err(|error| SettingsError::invalid("password", error.to_string()))?;
        Ok(passwords)
    }

    /// The PHC string of a new password, with a random salt. Checks the
    /// password's rules first, so that none breaking them is stored.
    pub fn hash(&self, password: &Password) -> Result<String, PasswordError> {
        password.check(&self.settings)?;
        self.hash_unchecked(password)
    }

    fn hash_unchecked(&self, password: &Password) -> Result<String, PasswordError> {
        let mut salt = [0u8; RECOMMENDED_SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)?;
        let hash = self.argon2.hash_password(password.0.as_bytes(), &salt)?;
        Ok(hash.to_string())
    }

    /// Whether `password` is the one hashed in `phc`, with the parameters
    /// written in `phc` (which may be older than the settings). False for a
    /// string that is not an argon2 PHC string.
    pub fn verify(&self, password: &Password, phc: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|hash| {
            self.argon2
                .verify_password(password.0.as_bytes(), &hash)
                .is_ok()
        })
    }

    /// Spends the work of one `verify` against a hash of the current
    /// parameters, and answers nothing: a login for an account that does not
    /// exist calls this, so that it takes as long as a wrong password. (A
    /// stored hash of older parameters takes its own time until rehashed.)
    pub fn verify_nothing(&self, password: &Password) {
        std::hint::black_box(self.verify(password, &self.dummy));
    }

    /// Whether `phc` was made with other parameters than the settings' (or
    /// is not an argon2id PHC string at all): after a successful login, the
    /// caller hashes the password again and stores the new string.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        let current = self.argon2.params();
        let same_algorithm = Algorithm::try_from(hash.algorithm) == Ok(Algorithm::Argon2id)
            && hash.version == Some(Version::V0x13.into());
        let same_params = Params::try_from(&hash).is_ok_and(|params| {
            params.m_cost() == current.m_cost()
                && params.t_cost() == current.t_cost()
                && params.p_cost() == current.p_cost()
                && params.output_len() == Some(Params::DEFAULT_OUTPUT_LEN)
        });
        !(same_algorithm && same_params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters, so that the tests stay fast.
    fn settings(memory_kib: u32, iterations: u32) -> PasswordSettings {
        PasswordSettings {
            memory_kib,
            iterations,
            parallelism: 1,
            ..PasswordSettings::default()
        }
    }

    fn passwords() -> Passwords {
        Passwords::new(&settings(1024, 1)).expect("small parameters")
    }

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let passwords = passwords();
        let phc = passwords
            .hash(&Password::new("correct horse"))
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(passwords.verify(&Password::new("correct horse"), &phc));
        assert!(!passwords.verify(&Password::new("correct horsE"), &phc));
        assert!(!passwords.verify(&Password::new(""), &phc));
        assert!(!passwords.needs_rehash(&phc));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        let passwords = passwords();
        let password = Password::new("correct horse");
        let first = passwords.hash(&password).expect("hash");
        let second = passwords.hash(&password).expect("hash");
        assert_ne!(first, second);
        assert!(passwords.verify(&password, &first));
        assert!(passwords.verify(&password, &second));
    }

    #[test]
    fn a_hash_of_older_parameters_verifies_and_needs_rehash() {
        let old = passwords();
        let new = Passwords::new(&settings(2048, 2)).expect("small parameters");
        let password = Password::new("correct horse");
        let phc = old.hash(&password).expect("hash");
        assert!(new.verify(&password, &phc));
        assert!(!new.verify(&Password::new("wrong horse"), &phc));
        assert!(new.needs_rehash(&phc));
        assert!(!old.needs_rehash(&phc));
    }

    #[test]
    fn what_is_not_an_argon2id_hash_fails_and_needs_rehash() {
        let passwords = passwords();
        let password = Password::new("correct horse");
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        );
        let salt = SaltString::encode_b64(&[7; 16]).expect("salt");
        let phc = argon2i
            .hash_password(b"correct horse", &salt)
            .expect("argon2i hash")
            .to_string();
        assert!(passwords.verify(&password, &phc), "still verifies: {phc}");
        assert!(passwords.needs_rehash(&phc));
        for garbage in ["", "correct horse", "$argon2id$v=19$m=1024"] {
            assert!(!passwords.verify(&password, garbage), "{garbage:?}");
            assert!(passwords.needs_rehash(garbage), "{garbage:?}");
        }
    }

    #[test]
    fn verify_nothing_spends_a_verify() {
        let passwords = passwords();
        passwords.verify_nothing(&Password::new("correct horse"));
        passwords.verify_nothing(&Password::new(""));
        assert!(
            passwords
                .dummy
                .starts_with("$argon2id$v=19$m=1024,t=1,p=1$")
        );
    }

    #[test]
    fn debug_never_shows_the_text() {
        let password: Password = serde_json::from_str("\"hunter2hunter2\"").expect("a JSON string");
        let printed = format!("{password:?} {:?}", Some(&password));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(format!("{password:?}"), "Password(***)");
        let passwords = passwords();
        let phc = passwords
            .hash(&Password::new("hunter2hunter2"))
            .expect("hash");
        assert!(passwords.verify(&password, &phc), "read from JSON whole");
    }

    #[test]
    fn length_is_counted_in_characters() {
        let rules = PasswordSettings {
            max_length: 10,
            ..PasswordSettings::default()
        };
        let check = |text: &str| Password::new(text).check(&rules).map_err(|e| e.code());
        assert_eq!(check("1234567"), Err("password_too_short"));
        assert_eq!(check("12345678"), Ok(()));
        assert_eq!(
            check("ééééééé"),
            Err("password_too_short"),
            "14 bytes, 7 chars"
        );
        assert_eq!(check("éééééééééé"), Ok(()), "20 bytes, 10 chars");
        assert_eq!(check("12345678901"), Err("password_too_long"));
    }

    #[test]
    fn control_characters_and_only_whitespace_are_refused() {
        let rules = PasswordSettings::default();
        let check = |text: &str| Password::new(text).check(&rules).map_err(|e| e.code());
        assert_eq!(check("correct\0horse"), Err("password_invalid"));
        assert_eq!(check("correct\nhorse"), Err("password_invalid"));
        assert_eq!(check("          "), Err("password_invalid"));
        assert_eq!(check(" correct horse "), Ok(()));
        let hashed = passwords().hash(&Password::new("correct\0horse"));
        assert_eq!(hashed.map_err(|e| e.code()), Err("password_invalid"));
    }

    #[test]
    fn settings_refuse_what_argon2_refuses_and_weak_rules() {
        assert!(PasswordSettings::default().validate().is_ok());
        let refused = |settings: PasswordSettings| match settings.validate() {
            Err(SettingsError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(refused(settings(4, 1)), "password.memory_kib");
        assert_eq!(refused(settings(1024, 0)), "password.iterations");
        let no_lanes = PasswordSettings {
            parallelism: 0,
            ..settings(1024, 1)
        };
        assert_eq!(refused(no_lanes), "password.parallelism");
        let too_many_lanes = PasswordSettings {
            parallelism: 256,
            ..settings(1024, 1)
        };
        assert_eq!(refused(too_many_lanes), "password.memory_kib");
        let short = PasswordSettings {
            min_length: 7,
            ..PasswordSettings::default()
        };
        assert_eq!(refused(short), "password.min_length");
        let upside_down = PasswordSettings {
            min_length: 12,
            max_length: 10,
            ..PasswordSettings::default()
        };
        assert_eq!(refused(upside_down), "password.max_length");
        assert!(Passwords::new(&settings(4, 1)).is_err());
    }
}
