//! Accounts of the browser client: a login name, the user it logs in as,
//! and the password's hash.
//!
//! Unlike the directory, accounts are written by the api straight to the
//! store, not through Kafka: the hash must not travel on a topic, and a
//! sign-up needs an atomic "is the name still free" check, which only the
//! store can give.

use std::fmt;

use rill_domain::UserId;

/// An account. The store keeps one per [`login_key`].
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name as the user chose it at sign-up, kept as given;
    /// accounts are unique by its [`login_key`].
    pub login: String,
    pub user: UserId,
    /// The password's argon2id hash as a PHC string. Opaque to the store;
    /// never in `Debug`.
    pub password_hash: String,
    pub created_at_ms: i64,
}

impl Account {
    /// The key this account is unique by: [`login_key`] of its login.
    pub fn key(&self) -> String {
        login_key(&self.login)
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("login", &self.login)
            .field("user", &self.user)
            .field("password_hash", &"***")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// The key accounts are unique by, and looked up by: the name trimmed of
/// leading and trailing whitespace (Unicode `White_Space`) and lowercased
/// (Unicode, [`str::to_lowercase`]). So "Ada", "ada " and "ADA" are one
/// account. There is no other normalization: a name written with a
/// combining accent and the same name with a precomposed letter are two
/// keys.
///
/// A name of only whitespace has the empty key, which no account can
/// have: the store refuses it ([`StoreError::EmptyLogin`]).
///
/// [`StoreError::EmptyLogin`]: crate::StoreError::EmptyLogin
pub fn login_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_surrounding_whitespace() {
        for name in ["Ada", "ada ", " ADA", "\tada\n", "\u{3000}Ada"] {
            assert_eq!(login_key(name), "ada", "{name:?}");
        }
        assert_eq!(
            login_key("Ada Lovelace"),
            "ada lovelace",
            "inner spaces stay"
        );
        assert_eq!(login_key("ÅSA"), "åsa");
        assert_eq!(
            login_key("ΣΊΣΥΦΟΣ"),
            "σίσυφος",
            "Unicode, not ASCII, lowercase"
        );
        assert_eq!(login_key("   "), "");
    }

    #[test]
    fn debug_hides_the_hash() {
        let account = Account {
            login: "Ada".into(),
            user: UserId::random(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_at_ms: 1,
        };
        let debug = format!("{account:?}");
        assert!(!debug.contains("argon2id"), "{debug}");
        assert!(!debug.contains("aGFzaA"), "{debug}");
        assert!(debug.contains(r#"password_hash: "***""#), "{debug}");
        assert!(debug.contains(r#"login: "Ada""#), "{debug}");
        assert_eq!(account.key(), "ada");
    }
}
