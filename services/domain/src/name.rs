//! A display name of a user or a profile.

use std::fmt;

use serde::Serialize;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} characters, the limit is {MAX_NAME_CHARS}")]
    TooLong { len: usize },
    #[error("name contains a control character")]
    ControlCharacter,
}

/// Trimmed, 1 to 100 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let text = text.trim();
        let len = text.chars().count();
        if len == 0 {
            return Err(NameError::Empty);
        }
        if len > MAX_NAME_CHARS {
            return Err(NameError::TooLong { len });
        }
        if text.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_ordinary_names() {
        assert_eq!(
            Name::parse("  Ada Lovelace ").map(|n| n.0),
            Ok("Ada Lovelace".into())
        );
    }

    #[test]
    fn rejects_empty_long_and_control_names() {
        assert_eq!(Name::parse(" "), Err(NameError::Empty));
        assert_eq!(
            Name::parse(&"é".repeat(101)),
            Err(NameError::TooLong { len: 101 })
        );
        assert!(Name::parse(&"é".repeat(100)).is_ok());
        assert_eq!(Name::parse("a\nb"), Err(NameError::ControlCharacter));
    }
}
