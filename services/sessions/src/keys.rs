//! Every Redis key of live sessions, named in one place: the scripts of one
//! module touch the keys of another (releasing a lock also drops the
//! session's registry entry and its edge's record of it).

use rill_domain::{ProfileId, UserId};

use crate::edges::Incarnation;

/// The live-session lock of a pair (`lock.rs`).
pub(crate) fn lock(prefix: &str, user: UserId, profile: ProfileId) -> String {
    format!("{prefix}:lock:{user}:{profile}")
}

/// The fencing counter of a server (`lock.rs`).
pub(crate) fn fence(prefix: &str) -> String {
    format!("{prefix}:fence")
}

/// The profiles a user has open (`registry.rs`).
pub(crate) fn launched(prefix: &str, user: UserId) -> String {
    format!("{prefix}:launched:{user}")
}

/// The users live on a profile (`registry.rs`).
pub(crate) fn live(prefix: &str, profile: ProfileId) -> String {
    format!("{prefix}:live:{profile}")
}

/// The set of every edge incarnation that beats or has yet to be reaped
/// (`edges.rs`).
pub(crate) fn edges(prefix: &str) -> String {
    format!("{prefix}:edges")
}

/// What every key of one edge incarnation starts with; the watch script
/// builds the `alive` keys from it.
pub(crate) fn edge_prefix(prefix: &str) -> String {
    format!("{prefix}:edge:")
}

/// One key of an edge incarnation (`edges.rs`): `alive` (its heartbeat),
/// `sessions` (the locks it holds), `dead` (declared dead), `reaper` (the
/// survivor ending its sessions).
pub(crate) fn edge(prefix: &str, edge: &Incarnation, what: EdgeKey) -> String {
    format!("{}{edge}:{}", edge_prefix(prefix), what.suffix())
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum EdgeKey {
    Alive,
    Sessions,
    Dead,
    Reaper,
}

impl EdgeKey {
    /// The watch script appends `:alive` itself: keep the two in step.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Sessions => "sessions",
            Self::Dead => "dead",
            Self::Reaper => "reaper",
        }
    }
}
