//! Presence: a user's live session on a profile opened (join) or closed
//! (leave). Edges publish these so that every live session of the profile,
//! on any edge, can show who is there.

use prost::Message as _;

use crate::ids::{ProfileId, UserId};
use crate::message::DecodeError;
use crate::proto::v1;
use crate::proto::v1::presence_change::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    pub user: UserId,
    pub profile: ProfileId,
    /// True when the session opened, false when it closed.
    pub joined: bool,
    /// The fence of the session's lock (orders sessions of one pair).
    pub fence: u64,
    pub at_ms: i64,
}

impl PresenceChange {
    /// The record key: the user, so that one user's changes stay in order.
    pub fn key(&self) -> String {
        self.user.to_string()
    }

    pub fn encode(&self) -> Vec<u8> {
        let kind = if self.joined { Kind::Join } else { Kind::Leave };
        v1::PresenceChange {
            user_id: self.user.to_bytes(),
            profile_id: self.profile.to_bytes(),
            kind: kind as i32,
            fence: self.fence,
            at_ms: self.at_ms,
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw = v1::PresenceChange::decode(bytes)?;
        let joined = match Kind::try_from(raw.kind) {
            Ok(Kind::Join) => true,
            Ok(Kind::Leave) => false,
            _ => return Err(DecodeError::Missing("kind")),
        };
        Ok(Self {
            user: UserId::from_slice(&raw.user_id)?,
            profile: ProfileId::from_slice(&raw.profile_id)?,
            joined,
            fence: raw.fence,
            at_ms: raw.at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_joins_and_leaves() {
        for joined in [true, false] {
            let change = PresenceChange {
                user: UserId::random(),
                profile: ProfileId::random(),
                joined,
                fence: 42,
                at_ms: 7,
            };
            assert_eq!(
                PresenceChange::decode(&change.encode()).expect("decodes"),
                change
            );
        }
    }

    #[test]
    fn an_unknown_kind_is_an_error() {
        let raw = v1::PresenceChange {
            user_id: UserId::random().to_bytes(),
            profile_id: ProfileId::random().to_bytes(),
            kind: 0,
            fence: 1,
            at_ms: 1,
        };
        assert!(PresenceChange::decode(&raw.encode_to_vec()).is_err());
    }
}
