//! A message body: the text a user sends, checked once where it enters.

use std::fmt;

use serde::Serialize;

/// Why a text is not a valid message body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("message body is empty")]
    Empty,
    #[error("message body is {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("message body contains a control character (U+{code:04X})")]
    ControlCharacter { code: u32 },
}

/// UTF-8 text that is not blank, fits the limit it was parsed with, and holds
/// no control characters other than newline and tab.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageBody(String);

impl MessageBody {
    /// Checks `text` against `max_bytes` (its UTF-8 length).
    pub fn parse(text: impl Into<String>, max_bytes: usize) -> Result<Self, BodyError> {
        let text = text.into();
        if text.len() > max_bytes {
            return Err(BodyError::TooLarge {
                len: text.len(),
                max: max_bytes,
            });
        }
        if text.trim().is_empty() {
            return Err(BodyError::Empty);
        }
        if let Some(c) = text
            .chars()
            .find(|c| c.is_control() && *c != '\n' && *c != '\t')
        {
            return Err(BodyError::ControlCharacter { code: u32::from(c) });
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Message text is user content: keep it out of logs by default.
        write!(f, "MessageBody({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_text() {
        let body = MessageBody::parse("hello\nworld\t!", 100).expect("valid");
        assert_eq!(body.as_str(), "hello\nworld\t!");
    }

    #[test]
    fn limit_counts_utf8_bytes() {
        assert_eq!(
            MessageBody::parse("é".repeat(3), 5),
            Err(BodyError::TooLarge { len: 6, max: 5 })
        );
        assert!(MessageBody::parse("é".repeat(3), 6).is_ok());
    }

    #[test]
    fn rejects_blank_and_control_characters() {
        assert_eq!(MessageBody::parse("  \n", 10), Err(BodyError::Empty));
        assert_eq!(
            MessageBody::parse("a\u{7}b", 10),
            Err(BodyError::ControlCharacter { code: 7 })
        );
    }

    #[test]
    fn debug_hides_the_text() {
        let body = MessageBody::parse("secret", 10).expect("valid");
        assert_eq!(format!("{body:?}"), "MessageBody(6 bytes)");
    }
}
