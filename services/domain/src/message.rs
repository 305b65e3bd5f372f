//! A chat message as the services see it, and its protobuf form on Kafka.

use prost::Message as _;

use crate::body::MessageBody;
use crate::ids::{IdError, MessageId, ProfileId, UserId};
use crate::proto::v1;

/// A chat message accepted by an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: MessageId,
    pub profile_id: ProfileId,
    pub sender_id: UserId,
    pub body: MessageBody,
    pub sent_at_ms: i64,
    pub edge_id: String,
}

/// A Kafka record that is not a valid chat message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a protobuf ChatMessage: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("invalid body: {0}")]
    Body(#[from] crate::body::BodyError),
    #[error("invalid name: {0}")]
    Name(#[from] crate::name::NameError),
    #[error("field {0} is missing")]
    Missing(&'static str),
}

impl ChatMessage {
    /// The protobuf bytes that go on the message topic.
    pub fn encode(&self) -> Vec<u8> {
        v1::ChatMessage {
            id: self.id.to_bytes(),
            profile_id: self.profile_id.to_bytes(),
            sender_id: self.sender_id.to_bytes(),
            body: self.body.as_str().to_owned(),
            sent_at_ms: self.sent_at_ms,
            edge_id: self.edge_id.clone(),
        }
        .encode_to_vec()
    }

    /// Reads a record of the message topic. The body was checked by the edge
    /// that accepted it; here it is checked only against `max_body_bytes`, so
    /// that a record written by a misbehaving producer cannot grow past it.
    pub fn decode(bytes: &[u8], max_body_bytes: usize) -> Result<Self, DecodeError> {
        let raw = v1::ChatMessage::decode(bytes)?;
        Ok(Self {
            id: MessageId::from_slice(&raw.id)?,
            profile_id: ProfileId::from_slice(&raw.profile_id)?,
            sender_id: UserId::from_slice(&raw.sender_id)?,
            body: MessageBody::parse(raw.body, max_body_bytes)?,
            sent_at_ms: raw.sent_at_ms,
            edge_id: raw.edge_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChatMessage {
        ChatMessage {
            id: MessageId::now(),
            profile_id: ProfileId::random(),
            sender_id: UserId::random(),
            body: MessageBody::parse("hi there", 100).expect("valid"),
            sent_at_ms: 1_700_000_000_000,
            edge_id: "edge-1".into(),
        }
    }

    #[test]
    fn round_trips_through_protobuf() {
        let message = sample();
        let decoded = ChatMessage::decode(&message.encode(), 100).expect("decodes");
        assert_eq!(decoded, message);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let err = ChatMessage::decode(&[0xff, 0xff, 0xff], 100).expect_err("must fail");
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
    }

    #[test]
    fn a_record_with_a_short_id_is_rejected() {
        let raw = v1::ChatMessage {
            id: vec![1, 2],
            ..Default::default()
        };
        let err = ChatMessage::decode(&raw.encode_to_vec(), 100).expect_err("must fail");
        assert!(matches!(err, DecodeError::Id(_)), "{err}");
    }
}
