//! The client protocol's JSON frames: what a client sends over a WebSocket
//! and what the edge sends over a WebSocket or SSE stream.

use std::sync::Arc;

use rill_domain::{MessageId, Position, ProfileId, Sequenced, UserId};
use serde::{Deserialize, Serialize};

/// The longest `ref` a client may attach to a send.
pub const MAX_REF_LEN: usize = 64;

/// A frame from the client (WebSocket text frame).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Send `body` to the session's profile. `ref` comes back in the `ack`
    /// or `error`, so the client can match them.
    Send {
        body: String,
        #[serde(default, rename = "ref")]
        reference: Option<String>,
        /// As [`SendRequest::idempotency_key`].
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Asks for a `pong`: an application-level liveness check.
    Ping,
}

/// The body of `POST /live/{profile}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub body: String,
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// Names this send across retries: a retry with the same key (same
    /// user, any edge, within `limits.idempotency_window_secs`) gets the
    /// first send's id and is not sent again.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 64;

/// Whether `key` may name a send: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`]
/// characters, none of them a control character or a space.
pub fn valid_idempotency_key(key: &str) -> bool {
    let len = key.chars().count();
    (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&len)
        && !key.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// An event from the edge.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent<'a> {
    /// The first event of every session: it is subscribed from here on.
    Ready {
        edge_id: &'a str,
        profile_id: ProfileId,
        user_id: UserId,
    },
    /// A chat message on the session's profile, at `position` in its
    /// order (what a client resumes from).
    Message {
        id: MessageId,
        position: Position,
        profile_id: ProfileId,
        sender_id: UserId,
        body: &'a str,
        sent_at: i64,
    },
    /// Kafka accepted the client's send `ref` as message `id`.
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        id: MessageId,
    },
    /// A request failed; the session goes on.
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        /// With `rate_limited`: how long to wait before the next send.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Messages were missed: dropped because the client read too slowly
    /// (`slow_client`), or not replayable on reconnect (`too_old`,
    /// `unknown_position`, `too_many`, `not_ready`). Fetch history for
    /// what came before the next message.
    Gap { reason: &'a str },
    /// The answer to a `ping`.
    Pong,
    /// Who is live on the profile right now (you included): the second
    /// event of every session. `truncated`: more are live than listed
    /// (`limits.max_presence_users`).
    Presence {
        profile_id: ProfileId,
        users: &'a [UserId],
        truncated: bool,
    },
    /// A user opened a live session on the profile.
    Join {
        profile_id: ProfileId,
        user_id: UserId,
    },
    /// A user's live session on the profile closed.
    Leave {
        profile_id: ProfileId,
        user_id: UserId,
    },
    /// Close and reconnect after about `after_ms`: the edge is draining, or
    /// the session reached its maximum lifetime or lost its lock.
    Reconnect { after_ms: u64, reason: &'a str },
    /// An event published by the server (the api's publish).
    Push {
        id: MessageId,
        event: &'a str,
        data: &'a serde_json::Value,
        sent_at: i64,
    },
}

impl ServerEvent<'_> {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "ready",
            Self::Message { .. } => "message",
            Self::Ack { .. } => "ack",
            Self::Error { .. } => "error",
            Self::Gap { .. } => "gap",
            Self::Pong => "pong",
            Self::Presence { .. } => "presence",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Reconnect { .. } => "reconnect",
            Self::Push { .. } => "push",
        }
    }

    pub fn from_message(sequenced: &Sequenced) -> ServerEvent<'_> {
        let message = &sequenced.message;
        ServerEvent::Message {
            id: message.id,
            position: sequenced.position(),
            profile_id: message.profile_id,
            sender_id: message.sender_id,
            body: message.body.as_str(),
            sent_at: message.sent_at_ms,
        }
    }

    /// Serialized once, to be written to any number of sessions.
    pub fn to_outbound(&self) -> Arc<Outbound> {
        let position = match self {
            Self::Message { position, .. } => Some(*position),
            _ => None,
        };
        // Serializing these plain structs cannot fail.
        let json = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        Arc::new(Outbound {
            name: self.name(),
            position,
            json,
        })
    }
}

/// A server event ready to write: its SSE name and id, and its JSON.
#[derive(Debug)]
pub struct Outbound {
    pub name: &'static str,
    /// The message's position (message events only): the SSE `id:`,
    /// which the browser sends back as `Last-Event-ID` when it reconnects.
    pub position: Option<Position>,
    pub json: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_short_and_plain() {
        assert!(valid_idempotency_key("7f3c-1"));
        assert!(valid_idempotency_key(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)));
        assert!(!valid_idempotency_key(
            &"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)
        ));
        assert!(!valid_idempotency_key(""));
        assert!(!valid_idempotency_key("a b"));
        assert!(!valid_idempotency_key("a\u{0}"));
    }

    #[test]
    fn send_frames_parse_with_and_without_ref() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","body":"hi","ref":"c1"}"#).expect("valid frame");
        assert!(
            matches!(frame, ClientFrame::Send { ref body, reference: Some(ref r), idempotency_key: None } if body == "hi" && r == "c1")
        );
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","body":"hi","idempotency_key":"k"}"#)
                .expect("valid frame");
        assert!(matches!(
            frame,
            ClientFrame::Send { idempotency_key: Some(ref k), .. } if k == "k"
        ));
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","body":"hi"}"#).expect("valid");
        assert!(matches!(
            frame,
            ClientFrame::Send {
                reference: None,
                ..
            }
        ));
    }

    #[test]
    fn unknown_types_and_fields_are_errors() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"shout","body":"hi"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"send","body":"hi","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<ClientFrame>("not json").is_err());
    }

    #[test]
    fn message_events_carry_their_position_for_sse() {
        let id = MessageId::now();
        let position = Position::new(42, id);
        let event = ServerEvent::Message {
            id,
            position,
            profile_id: ProfileId::random(),
            sender_id: UserId::random(),
            body: "hi",
            sent_at: 1,
        };
        let out = event.to_outbound();
        assert_eq!(out.name, "message");
        assert_eq!(out.position, Some(position));
        let json: serde_json::Value = serde_json::from_str(out.json.as_str()).expect("json");
        assert_eq!(json["type"], "message");
        assert_eq!(json["body"], "hi");
        assert_eq!(json["id"], id.to_string());
        assert_eq!(json["position"], position.to_string());
    }

    #[test]
    fn errors_serialize_with_their_ref() {
        let out = ServerEvent::Error {
            code: "bad_json",
            message: "m",
            reference: Some("r"),
            retry_after_ms: None,
        }
        .to_outbound();
        assert_eq!(
            out.json.as_str(),
            r#"{"type":"error","code":"bad_json","message":"m","ref":"r"}"#
        );
    }
}
