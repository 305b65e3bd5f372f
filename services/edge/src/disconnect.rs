//! Why a live session ends, in one type: its name (for logs and
//! metrics), its WebSocket close code, and the last event the client gets
//! (centrifuge's `disconnect.go` is the model). The hub ends sessions from
//! outside with one (an unbind, the drain, a lost lock, a slow client), the
//! transports with the others (the client closed, went silent, sent a bad
//! frame).

use std::sync::Arc;
use std::time::Duration;

use crate::events::{Outbound, ServerEvent};

/// WebSocket close codes. The application's (4000-4999) echo the HTTP
/// status of the same refusal; the others are RFC 6455's (7.4.1).
pub mod close_code {
    /// Normal: the answer to the client's own close.
    pub const NORMAL: u16 = 1000;
    /// Going away: drain, lifetime, lost lock: come back.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol (framing).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy: the client read too slowly, or went silent.
    pub const POLICY: u16 = 1008;
    /// A frame or message larger than `limits.max_frame_bytes`.
    pub const TOO_LARGE: u16 = 1009;
    /// The user is not (or no longer) a member of the profile.
    pub const NOT_A_MEMBER: u16 = 4403;
    /// The session's login ended (logout, "log out everywhere").
    pub const LOGGED_OUT: u16 = 4401;
    /// The user already has a live session on the profile.
    pub const ALREADY_LIVE: u16 = 4409;
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The user was unbound from the profile, or the user or the profile
    /// was deleted.
    NotAMember,
    /// The session's login was ended (logout here or elsewhere, or "log
    /// out everywhere").
    LoggedOut,
    /// The client should come back (to this edge or another) after a short
    /// wait.
    Reconnect(ReconnectReason),
    /// The client stayed behind for longer than `limits.slow_client_secs`,
    /// or a write to it did not finish in that time.
    TooSlow,
    /// Nothing heard from the client for a heartbeat interval plus
    /// `heartbeat.timeout_secs`.
    HeartbeatTimeout,
    /// The client closed the stream or the connection was lost.
    Closed,
    /// The client sent a frame that breaks the WebSocket protocol; the
    /// close code is the one the framing error calls for.
    BadFrame { code: u16 },
    /// The client sent a frame larger than `limits.max_frame_bytes`.
    FrameTooLarge,
    /// The client began a message and did not finish it within
    /// `limits.fragment_timeout_secs`.
    MessageTimeout,
    /// Refused right after the upgrade: the pair already has a live
    /// session (a browser cannot read the status of a refused upgrade).
    AlreadyLive,
}

/// Why a client is told to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// The edge is shutting down.
    Draining,
    /// The session reached `lifetime.max_secs`.
    Lifetime,
    /// The session's lock could not be kept (Redis unreachable, or it
    /// expired).
    LockLost,
    /// Another edge declared this one dead (it was paused or cut off from
    /// Redis) and ended its sessions for it.
    DeclaredDead,
}

impl ReconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Lifetime => "lifetime",
            Self::LockLost => "lock_lost",
            Self::DeclaredDead => "declared_dead",
        }
    }
}

impl Disconnect {
    /// A stable name, for logs and the `reason` label of
    /// `rill_edge_sessions_ended_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAMember => "not_a_member",
            Self::LoggedOut => "logged_out",
            Self::Reconnect(why) => why.as_str(),
            Self::TooSlow => "too_slow",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::Closed => "closed",
            Self::BadFrame { .. } => "bad_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::MessageTimeout => "message_timeout",
            Self::AlreadyLive => "already_live",
        }
    }

    /// The WebSocket close code.
    pub fn close_code(self) -> u16 {
        match self {
            Self::NotAMember => close_code::NOT_A_MEMBER,
            Self::LoggedOut => close_code::LOGGED_OUT,
            Self::Reconnect(_) => close_code::GOING_AWAY,
            Self::TooSlow | Self::HeartbeatTimeout | Self::MessageTimeout => close_code::POLICY,
            Self::Closed => close_code::NORMAL,
            Self::BadFrame { code } => code,
            Self::FrameTooLarge => close_code::TOO_LARGE,
            Self::AlreadyLive => close_code::ALREADY_LIVE,
        }
    }

    /// The last event the client gets before the close, if any: none for a
    /// client that is gone, too slow to read it, or that broke the
    /// protocol. A `reconnect` waits a random share of `reconnect_jitter`
    /// (`drain.reconnect_jitter_ms`), so that clients told together come
    /// back spread out.
    pub fn last_event(self, reconnect_jitter: Duration) -> Option<Arc<Outbound>> {
        match self {
            Self::NotAMember => Some(error_event("not_a_member", "not a member of this profile")),
            Self::LoggedOut => Some(error_event("session_ended", "logged out: log in again")),
            Self::AlreadyLive => Some(error_event(
                "already_live",
                "this user already has a live session on this profile (another tab, device or edge); close it first",
            )),
            Self::Reconnect(why) => {
                let jitter_ms = u64::try_from(reconnect_jitter.as_millis()).unwrap_or(u64::MAX);
                let after_ms = if jitter_ms == 0 {
                    0
                } else {
                    rand::random::<u64>() % jitter_ms
                };
                Some(
                    ServerEvent::Reconnect {
                        after_ms,
                        reason: why.as_str(),
                    }
                    .to_outbound(),
                )
            }
            Self::TooSlow
            | Self::HeartbeatTimeout
            | Self::Closed
            | Self::BadFrame { .. }
            | Self::FrameTooLarge
            | Self::MessageTimeout => None,
        }
    }
}

fn error_event(code: &str, message: &str) -> Arc<Outbound> {
    ServerEvent::Error {
        code,
        message,
        reference: None,
        retry_after_ms: None,
    }
    .to_outbound()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_has_its_code_and_last_event() {
        let cases = [
            (Disconnect::NotAMember, 4403, Some("error")),
            (Disconnect::AlreadyLive, 4409, Some("error")),
            (
                Disconnect::Reconnect(ReconnectReason::Draining),
                1001,
                Some("reconnect"),
            ),
            (Disconnect::TooSlow, 1008, None),
            (Disconnect::HeartbeatTimeout, 1008, None),
            (Disconnect::MessageTimeout, 1008, None),
            (Disconnect::FrameTooLarge, 1009, None),
            (Disconnect::BadFrame { code: 1007 }, 1007, None),
            (Disconnect::Closed, 1000, None),
        ];
        for (end, code, event) in cases {
            assert_eq!(end.close_code(), code, "{end:?}");
            assert_eq!(
                end.last_event(Duration::ZERO).map(|e| e.name),
                event,
                "{end:?}"
            );
        }
    }

    #[test]
    fn a_reconnect_waits_less_than_the_jitter() {
        for _ in 0..100 {
            let event = Disconnect::Reconnect(ReconnectReason::Lifetime)
                .last_event(Duration::from_millis(50))
                .expect("an event");
            let json: serde_json::Value = serde_json::from_str(&event.json).expect("json");
            assert!(json["after_ms"].as_u64().expect("after_ms") < 50);
            assert_eq!(json["reason"], "lifetime");
        }
    }
}
