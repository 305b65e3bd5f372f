//! A server-side publish: an event the api sends to every live session on a
//! profile, or to every live session of one user.

use prost::Message as _;

use crate::ids::{MessageId, ProfileId, UserId};
use crate::message::DecodeError;
use crate::proto::v1;

/// Who a push is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushTarget {
    Profile(ProfileId),
    User(UserId),
}

/// An event published by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub id: MessageId,
    pub target: PushTarget,
    /// The event's name, as the client sees it.
    pub event: String,
    /// A JSON value, validated where it entered.
    pub data_json: String,
    pub sent_at_ms: i64,
}

impl Push {
    /// The record key: the target's id.
    pub fn key(&self) -> String {
        match self.target {
            PushTarget::Profile(p) => p.to_string(),
            PushTarget::User(u) => u.to_string(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let target = match self.target {
            PushTarget::Profile(p) => v1::push::Target::ProfileId(p.to_bytes()),
            PushTarget::User(u) => v1::push::Target::UserId(u.to_bytes()),
        };
        v1::Push {
            id: self.id.to_bytes(),
            target: Some(target),
            event: self.event.clone(),
            data_json: self.data_json.clone(),
            sent_at_ms: self.sent_at_ms,
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw = v1::Push::decode(bytes)?;
        let target = match raw.target.ok_or(DecodeError::Missing("target"))? {
            v1::push::Target::ProfileId(p) => PushTarget::Profile(ProfileId::from_slice(&p)?),
            v1::push::Target::UserId(u) => PushTarget::User(UserId::from_slice(&u)?),
        };
        Ok(Self {
            id: MessageId::from_slice(&raw.id)?,
            target,
            event: raw.event,
            data_json: raw.data_json,
            sent_at_ms: raw.sent_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_both_targets() {
        for target in [
            PushTarget::Profile(ProfileId::random()),
            PushTarget::User(UserId::random()),
        ] {
            let push = Push {
                id: MessageId::now(),
                target,
                event: "notice".into(),
                data_json: r#"{"a":1}"#.into(),
                sent_at_ms: 9,
            };
            assert_eq!(Push::decode(&push.encode()).expect("decodes"), push);
        }
    }
}
