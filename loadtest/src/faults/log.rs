//! What a fault run records: each client's sessions, deliveries, gaps and
//! presence view, and each send's outcome. Plain data, times in Unix ms,
//! shared by the clients (`client.rs`) and judged at the end
//! (`verdict.rs`, `timeline.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use uuid::Uuid;

/// A message body of a fault run: `ft:<key>:` and padding.
pub fn body(key: u64) -> String {
    format!("ft:{key}:{}", "x".repeat(24))
}

/// The key of a fault run's message body.
pub fn key_of(body: &str) -> Option<u64> {
    body.strip_prefix("ft:")?.split(':').next()?.parse().ok()
}

/// One live session of a client.
#[derive(Debug, Clone, Serialize)]
pub struct SessionLog {
    pub opened_ms: u64,
    pub edge: String,
    /// Opened with a last position (a reconnect).
    pub resumed: bool,
    pub closed_ms: Option<u64>,
    /// Why it ended, as the client saw it (a close code, `reconnect:
    /// <reason>`, a read error).
    pub end: Option<String>,
}

/// One message a client received.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Delivery {
    pub at_ms: u64,
    pub key: u64,
    /// The position's offset in the profile's partition.
    pub offset: u64,
}

/// How a client left for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuitHow {
    /// Closed its session itself.
    Closed,
    /// Its connection was cut (a fault) and it never came back: only the
    /// platform can tell the others it left.
    Vanished,
}

/// When and how a client is to leave for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitPlan {
    /// Closes its session at this time.
    CloseAt(u64),
    /// Gives up at its first disconnect after this time.
    VanishAfter(u64),
}

/// Everything one client saw.
#[derive(Debug, Clone, Serialize)]
pub struct ClientLog {
    pub index: usize,
    pub user: Uuid,
    pub profile: Uuid,
    pub transport: &'static str,
    pub sessions: Vec<SessionLog>,
    /// (when, why) of each refused or failed connect.
    pub connect_failures: Vec<(u64, String)>,
    #[serde(skip)]
    pub deliveries: Vec<Delivery>,
    /// (when, reason) of each `gap`.
    pub gaps: Vec<(u64, String)>,
    /// Who the client believes is live on its profile: the last
    /// `presence` snapshot with the `join`s and `leave`s since.
    pub presence: BTreeSet<Uuid>,
    pub quit: Option<(u64, QuitHow)>,
    #[serde(skip)]
    pub quit_plan: Option<QuitPlan>,
}

impl ClientLog {
    pub fn new(index: usize, user: Uuid, profile: Uuid, transport: &'static str) -> Self {
        Self {
            index,
            user,
            profile,
            transport,
            sessions: Vec::new(),
            connect_failures: Vec::new(),
            deliveries: Vec::new(),
            gaps: Vec::new(),
            presence: BTreeSet::new(),
            quit: None,
            quit_plan: None,
        }
    }

    /// Whether a session is open now.
    pub fn connected(&self) -> bool {
        self.sessions.last().is_some_and(|s| s.closed_ms.is_none())
    }

    /// When its last session closed (`None` while one is open, or never
    /// opened).
    pub fn last_closed(&self) -> Option<u64> {
        match self.sessions.last() {
            Some(session) => session.closed_ms,
            None => None,
        }
    }

    /// When its first session opened.
    pub fn first_opened(&self) -> Option<u64> {
        self.sessions.first().map(|s| s.opened_ms)
    }
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    Pending,
    /// Kafka has it: the message id.
    Acked(String),
    /// Refused with this code (an `error` event, an HTTP status).
    Refused(String),
    /// No answer (the connection went, the request failed): it may or may
    /// not have been written.
    Unknown(String),
}

/// One send.
#[derive(Debug, Clone, Serialize)]
pub struct SendLog {
    pub key: u64,
    pub profile: Uuid,
    pub client: usize,
    pub sent_ms: u64,
    pub answered_ms: Option<u64>,
    pub outcome: Outcome,
}

/// A fault the scenario injected: when, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub at_ms: u64,
    pub label: String,
}

/// Marks from the scenario's file, one `UNIX_MS<TAB>LABEL` a line (other
/// lines skipped).
pub fn parse_marks(text: &str) -> Vec<Mark> {
    text.lines()
        .filter_map(|line| {
            let (at, label) = line.split_once('\t')?;
            Some(Mark {
                at_ms: at.trim().parse().ok()?,
                label: label.trim().to_owned(),
            })
        })
        .collect()
}

/// Counts by name.
pub fn tally<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_key() {
        assert_eq!(key_of(&body(42)), Some(42));
        assert_eq!(key_of("lt:1:2:"), None);
        assert_eq!(key_of("ft:x:"), None);
    }

    #[test]
    fn marks_are_read_from_tab_separated_lines() {
        let marks = parse_marks("1000\tkill -9 edge-2\nnonsense\n2000\t start edge-2 \n");
        assert_eq!(
            marks,
            [
                Mark {
                    at_ms: 1000,
                    label: "kill -9 edge-2".into()
                },
                Mark {
                    at_ms: 2000,
                    label: "start edge-2".into()
                }
            ]
        );
    }
}
