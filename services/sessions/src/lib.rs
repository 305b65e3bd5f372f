//! Live sessions in Redis, across every edge: the one-session-per-pair lock
//! and the registry of who has which profile open right now.
//!
//! - [`nodes`]: the Redis servers (one, or several independent ones).
//! - [`lock`]: the live-session lock (token, TTL, Redlock majority, fencing).
//! - [`edges`]: edges' heartbeats, and what a dead one held, for the
//!   survivors to end.
//! - [`logins`]: what session cookies stand for, so that they can be ended.
//! - [`send_keys`]: idempotency keys of sends (a retry is sent once).
//! - [`registry`]: launched profiles per user and live users per profile.
//! - [`settings`]: where Redis is and how long entries live.
//!
//! `keys` names every key once (the lock scripts touch the registry's and
//! the edges' keys too).

pub mod edges;
mod keys;
pub mod lock;
pub mod logins;
pub mod nodes;
pub mod registry;
pub mod send_keys;
pub mod settings;

pub use edges::{Beat, Edges, Incarnation};
pub use lock::{Lock, LockError, LockManager, Refresh};
pub use logins::Logins;
pub use nodes::Nodes;
pub use registry::LiveSessions;
pub use send_keys::{Claim, SendKeys};
pub use settings::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("only {up} Redis servers answer; {needed} are needed")]
    NoQuorum { up: usize, needed: usize },
    #[error("Redis returned an invalid id: {0}")]
    BadId(#[from] rill_domain::IdError),
    #[error("redis.ca_file: cannot read {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
}

/// The Redis servers of `settings`, once a majority of them answers: one
/// set of connections for the locks, the registry, the logins and the
/// send keys of a service.
pub async fn connect(settings: &RedisSettings) -> Result<Nodes, SessionsError> {
    let nodes = Nodes::new(settings)?;
    nodes.ping().await?;
    Ok(nodes)
}
