//! Idempotency keys of sends: a client names a send with a key, and a retry
//! of the same key by the same user, on any edge, within the window, gets
//! the first send's message id instead of sending again.
//!
//! Key: `{prefix}:send:{user}:{key}` → the message id, set only if absent
//! (`SET NX PX window`), on every Redis server of `redis.urls`. The id is
//! claimed before the message goes to Kafka: a retry that arrives while
//! the first send is still on its way gets the same id (and the message
//! arrives once). A send that fails gives its key back, so that its retry
//! can send.

use std::time::Duration;

use rill_domain::{MessageId, UserId};

use crate::SessionsError;
use crate::nodes::Nodes;

/// What claiming a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is this send's: send it with the id claimed.
    New,
    /// The key was claimed by an earlier send, with this id.
    Sent(MessageId),
}

/// Idempotency keys of every user's sends.
#[derive(Clone)]
pub struct SendKeys {
    nodes: Nodes,
    prefix: String,
    window: Duration,
}

impl std::fmt::Debug for SendKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendKeys")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl SendKeys {
    /// Keys remembered for `window` after their first send.
    pub fn new(nodes: Nodes, prefix: &str, window: Duration) -> Self {
        Self {
            nodes,
            prefix: prefix.to_owned(),
            window,
        }
    }

    fn redis_key(&self, user: UserId, key: &str) -> String {
        format!("{}:send:{user}:{key}", self.prefix)
    }

    /// Claims `key` of `user` for the message `id`, or finds the id an
    /// earlier send claimed it for. With several servers, the id any of
    /// them holds wins; a new claim needs a majority.
    pub async fn claim(
        &self,
        user: UserId,
        key: &str,
        id: MessageId,
    ) -> Result<Claim, SessionsError> {
        let redis_key = self.redis_key(user, key);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&redis_key)
            .arg(id.to_string())
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(self.window.as_millis() as u64);
        let answers: Vec<(Option<String>,)> = self.nodes.query_each(&pipe).await;
        if let Some(earlier) = answers.iter().find_map(|(earlier,)| earlier.as_deref()) {
            return Ok(Claim::Sent(earlier.parse()?));
        }
        self.nodes.require_majority(answers.len())?;
        Ok(Claim::New)
    }

    /// Gives `key` back after its send failed, so that a retry sends (an
    /// error unless a majority of the servers took it back).
    pub async fn release(&self, user: UserId, key: &str) -> Result<(), SessionsError> {
        let mut pipe = redis::pipe();
        pipe.del(self.redis_key(user, key)).ignore();
        self.nodes.query_majority::<()>(&pipe).await.map(|_| ())
    }
}
