//! Which profiles each user has open right now (launched), and who is live
//! on each profile, across every edge.
//!
//! Each entry is a member of a sorted set scored by its expiry time (ms):
//! - `{prefix}:launched:{user}`: the profile ids the user has open;
//! - `{prefix}:live:{profile}`: the user ids live on the profile.
//!
//! The edge adds an entry when a session opens; the lock's refresh (every
//! `ttl / 3`) re-adds it while the lock is the session's, and the lock's
//! release removes it (`lock.rs`: one script call for both). The
//! survivors remove the entries of an edge that died (`edges.rs`); readers
//! count only entries whose expiry is in the future all the same, so
//! entries nobody removed vanish after the TTL.
//!
//! With several Redis servers, writes go to all of them and reads take the
//! union of those that answer: the registry is a view for people and the
//! api, not a lock, so one server that answers is enough.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::AsyncCommands as _;
use rill_domain::{ProfileId, UserId};

use crate::SessionsError;
use crate::keys;
use crate::nodes::Nodes;

/// Pairs per registry pipeline (four commands each). An edge re-registers
/// all its sessions every TTL/3: in one pipeline that was 60,000 commands
/// for 15,000 sessions, which held Redis long enough for other edges' lock
/// writes to time out, and grew the connection's write buffer (kept ever
/// after) by about 450 bytes per session.
const REGISTER_CHUNK: usize = 250;

/// The cluster-wide registry of live sessions.
#[derive(Clone)]
pub struct LiveSessions {
    nodes: Nodes,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("nodes", &self.nodes)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl LiveSessions {
    pub fn new(nodes: Nodes, prefix: &str, ttl: Duration) -> Self {
        Self {
            nodes,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    /// How often an edge must refresh its entries.
    pub fn refresh_interval(&self) -> Duration {
        self.ttl / 3
    }

    fn launched_key(&self, user: UserId) -> String {
        keys::launched(&self.prefix, user)
    }

    fn live_key(&self, profile: ProfileId) -> String {
        keys::live(&self.prefix, profile)
    }

    /// Adds (or refreshes) live sessions of (user, profile) pairs, in
    /// pipelines of [`REGISTER_CHUNK`] pairs, one after the other.
    pub async fn register(&self, pairs: &[(UserId, ProfileId)]) -> Result<(), SessionsError> {
        for chunk in pairs.chunks(REGISTER_CHUNK) {
            self.register_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn register_chunk(&self, pairs: &[(UserId, ProfileId)]) -> Result<(), SessionsError> {
        let expires = now_ms() + self.ttl.as_millis() as i64;
        let ttl_ms = self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (user, profile) in pairs {
            pipe.zadd(self.launched_key(*user), profile.to_string(), expires)
                .ignore();
            pipe.pexpire(self.launched_key(*user), ttl_ms).ignore();
            pipe.zadd(self.live_key(*profile), user.to_string(), expires)
                .ignore();
            pipe.pexpire(self.live_key(*profile), ttl_ms).ignore();
        }
        self.write(&pipe).await
    }

    /// Runs `pipe` on every server; fine when at least one answered.
    async fn write(&self, pipe: &redis::Pipeline) -> Result<(), SessionsError> {
        let answers = self
            .nodes
            .on_each(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await;
        any_answered(answers).map(|_| ())
    }

    /// Removes the live sessions of (user, profile) pairs, in pipelines of
    /// [`REGISTER_CHUNK`] pairs.
    pub async fn unregister(&self, pairs: &[(UserId, ProfileId)]) -> Result<(), SessionsError> {
        for chunk in pairs.chunks(REGISTER_CHUNK) {
            let mut pipe = redis::pipe();
            for (user, profile) in chunk {
                pipe.zrem(self.launched_key(*user), profile.to_string())
                    .ignore();
                pipe.zrem(self.live_key(*profile), user.to_string())
                    .ignore();
            }
            self.write(&pipe).await?;
        }
        Ok(())
    }

    /// The profiles `user` has open right now.
    pub async fn launched(&self, user: UserId) -> Result<Vec<ProfileId>, SessionsError> {
        let ids = self.live_members(self.launched_key(user), None).await?;
        Ok(ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?)
    }

    /// The users live on `profile` right now.
    pub async fn live_users(&self, profile: ProfileId) -> Result<Vec<UserId>, SessionsError> {
        let ids = self.live_members(self.live_key(profile), None).await?;
        Ok(ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?)
    }

    /// At most `max` of the users live on `profile` (any of them, you
    /// included if `max` allows), and whether more are live.
    pub async fn some_live_users(
        &self,
        profile: ProfileId,
        max: usize,
    ) -> Result<(Vec<UserId>, bool), SessionsError> {
        // One more than asked: tells whether there are more.
        let ids = self
            .live_members(self.live_key(profile), Some(max.saturating_add(1)))
            .await?;
        let users = ids
            .iter()
            .take(max)
            .map(|id| id.parse())
            .collect::<Result<_, _>>()?;
        Ok((users, ids.len() > max))
    }

    /// The unexpired members of sorted set `key` (at most `limit` from each
    /// server), over every server that answers, sorted.
    async fn live_members(
        &self,
        key: String,
        limit: Option<usize>,
    ) -> Result<BTreeSet<String>, SessionsError> {
        let now = now_ms();
        // LIMIT 0 -1: all of them.
        let count = limit.map_or(-1, |n| n as isize);
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let key = &key;
                async move {
                    conn.zrangebyscore_limit::<_, _, _, Vec<String>>(key, now + 1, "+inf", 0, count)
                        .await
                }
            })
            .await;
        Ok(any_answered(answers)?.into_iter().flatten().collect())
    }
}

/// The answers of the servers that answered; an error if none did.
fn any_answered<T>(answers: Vec<Result<T, redis::RedisError>>) -> Result<Vec<T>, SessionsError> {
    let mut ok = Vec::new();
    let mut last_err = None;
    for answer in answers {
        match answer {
            Ok(value) => ok.push(value),
            Err(err) => last_err = Some(err),
        }
    }
    match (ok.is_empty(), last_err) {
        (true, Some(err)) => Err(SessionsError::Redis(err)),
        _ => Ok(ok),
    }
}

use rill_runtime::clock::now_ms;
