//! Typed identifiers. All are UUIDs; message ids are UUIDv7 so that they
//! sort by the time the accepting edge assigned them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A malformed identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} must be a UUID, got {got:?}")]
    NotAUuid { kind: &'static str, got: String },
    #[error("{kind} must be 16 bytes, got {len}")]
    WrongLength { kind: &'static str, len: usize },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// What this id is called in error messages.
            pub const KIND: &'static str = $kind;

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 bytes that represent this id in protobuf messages.
            pub fn to_bytes(&self) -> Vec<u8> {
                self.0.as_bytes().to_vec()
            }

            /// Reads the id from its protobuf form.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                Uuid::from_slice(bytes).map(Self).map_err(|_| IdError::WrongLength {
                    kind: $kind,
                    len: bytes.len(),
                })
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdError::NotAUuid {
                    kind: $kind,
                    got: s.chars().take(64).collect(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

uuid_id!(
    /// A person.
    UserId,
    "user id"
);
uuid_id!(
    /// A shared space users are bound to: a room, a channel, a feed.
    ProfileId,
    "profile id"
);
uuid_id!(
    /// A chat message. UUIDv7: ordered by the accepting edge's clock.
    MessageId,
    "message id"
);

uuid_id!(
    /// One login of a user: what a session cookie stands for, so that it can
    /// be ended (logout) while other logins of the user go on. Random
    /// (UUIDv4): knowing one tells nothing of another.
    LoginId,
    "login id"
);

impl LoginId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl UserId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl ProfileId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl MessageId {
    /// A new time-ordered id. Ids from one process are strictly increasing;
    /// ids from several edges are ordered only as well as their clocks agree.
    pub fn now() -> Self {
        Self(Uuid::now_v7())
    }

    /// Milliseconds since the Unix epoch encoded in a UUIDv7 id, if it is one.
    pub fn timestamp_ms(&self) -> Option<u64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }

    /// The smallest id of millisecond `ms`: every id made at or after `ms`
    /// is at least this, every id made before is below it.
    pub fn first_at(ms: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6] = 0x70; // version 7
        bytes[8] = 0x80; // RFC 4122 variant
        Self(Uuid::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_orders_below_every_later_id() {
        let id = MessageId::now();
        let ms = id.timestamp_ms().expect("v7");
        assert!(MessageId::first_at(ms) <= id);
        assert!(MessageId::first_at(ms + 1) > id);
        assert_eq!(MessageId::first_at(ms).timestamp_ms(), Some(ms));
    }

    #[test]
    fn parses_and_prints_the_same_uuid() {
        let text = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let id: UserId = text.parse().expect("valid uuid");
        assert_eq!(id.to_string(), text);
    }

    #[test]
    fn malformed_text_names_the_kind_of_id() {
        let err = "not-a-uuid".parse::<ProfileId>().expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "profile id must be a UUID, got \"not-a-uuid\""
        );
    }

    #[test]
    fn wrong_byte_length_is_an_error() {
        let err = MessageId::from_slice(&[1, 2, 3]).expect_err("must fail");
        assert_eq!(
            err,
            IdError::WrongLength {
                kind: "message id",
                len: 3
            }
        );
    }

    #[test]
    fn message_ids_increase_and_carry_their_time() {
        let a = MessageId::now();
        let b = MessageId::now();
        assert!(b > a, "{b:?} should sort after {a:?}");
        let ms = a.timestamp_ms().expect("v7 has a timestamp");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after epoch")
            .as_millis() as u64;
        assert!(
            now.abs_diff(ms) < 60_000,
            "timestamp {ms} far from now {now}"
        );
    }

    #[test]
    fn bytes_round_trip() {
        let id = UserId::random();
        assert_eq!(UserId::from_slice(&id.to_bytes()), Ok(id));
    }
}
