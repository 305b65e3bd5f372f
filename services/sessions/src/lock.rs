//! The live-session lock: at most one live session per (user, profile) in
//! the whole cluster, over one Redis or a majority of several (Redlock).
//!
//! Taking the lock sets `{prefix}:lock:{user}:{profile}` to a random token
//! with `NX` and a TTL, on every server at once; it is held when a majority
//! said yes within the TTL. A refresh or a release first compares the token
//! (in a Lua script, atomically), so an edge can never extend or drop a lock
//! that expired and was taken by another.
//!
//! Fencing: each server keeps one counter, `{prefix}:fence`. An acquisition
//! increments it on every server that granted the lock (never below the
//! current time in ms, so a server restarted without its data does not go
//! back), takes the largest value as the lock's fence, and raises the
//! counters of those servers to that value before the lock counts as held.
//! The next holder of the same pair needs a majority too, so it meets at
//! least one of those servers after this lock left it, and its fence is
//! larger. Fences grow across all pairs, not only per pair.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use rill_domain::{ProfileId, UserId};

use crate::nodes::Nodes;

/// Takes the lock and bumps the fence counter; returns the fence, or 0 when
/// the lock is held by someone else.
const ACQUIRE: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
local floor = tonumber(ARGV[3])
if fence < floor then fence = floor end
redis.call('SET', KEYS[2], string.format('%d', fence))
return fence";

/// Raises the fence counter to ARGV[2] while the lock holds our token.
const RAISE_FENCE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1";

/// Extends each lock in KEYS whose value is its token (ARGV[i + 1]) by
/// ARGV[1] ms; one 1 (extended) or 0 (not ours) per key.
const REFRESH: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out";

/// Deletes each lock only if it still holds our token; how many it deleted.
const RELEASE: &str = r"
local deleted = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    deleted = deleted + redis.call('DEL', key)
  end
end
return deleted";

/// Locks refreshed or released by one script call, so that no call holds a
/// server for long.
const LOCKS_PER_CALL: usize = 500;

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub user: UserId,
    pub profile: ProfileId,
    /// Random; kept as a number (an edge holds thousands of locks), sent as
    /// 32 hex digits.
    token: u128,
    /// Larger than the fence of every earlier holder of this pair's lock.
    pub fence: u64,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another session holds it.
    #[error("a live session of this user on this profile is already open")]
    Busy,
    /// Too few Redis servers answered to know: refuse rather than guess.
    #[error("only {granted_or_busy} of {servers} Redis servers answered; {needed} are needed")]
    NoQuorum {
        granted_or_busy: usize,
        servers: usize,
        needed: usize,
    },
}

/// What a refresh found out about one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A majority extended it.
    Held,
    /// A majority no longer holds it: it expired, maybe taken by another.
    Lost,
    /// Too few servers answered to say.
    Unknown,
}

/// Takes, refreshes and releases live-session locks.
#[derive(Clone)]
pub struct LockManager {
    nodes: Nodes,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("nodes", &self.nodes)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl LockManager {
    /// Locks that expire `ttl` after their last refresh.
    pub fn new(nodes: Nodes, prefix: &str, ttl: Duration) -> Self {
        Self {
            nodes,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(&self, user: UserId, profile: ProfileId) -> String {
        format!("{}:lock:{user}:{profile}", self.prefix)
    }

    fn fence_key(&self) -> String {
        format!("{}:fence", self.prefix)
    }

    /// The lock of (user, profile) if a majority grants it.
    pub async fn acquire(&self, user: UserId, profile: ProfileId) -> Result<Lock, LockError> {
        let started = Instant::now();
        let key = self.key(user, profile);
        let fence_key = self.fence_key();
        let token = rand::random::<u128>();
        let token_text = token_text(token);
        let ttl_ms = self.ttl.as_millis() as u64;
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let (key, fence_key, token) = (&key, &fence_key, &token_text);
                async move {
                    redis::Script::new(ACQUIRE)
                        .key(key)
                        .key(fence_key)
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(rill_runtime::clock::now_ms())
                        .invoke_async::<u64>(&mut conn)
                        .await
                }
            })
            .await;
        let granted: Vec<(usize, u64)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Ok(fence) if *fence > 0 => Some((i, *fence)),
                _ => None,
            })
            .collect();
        let busy = answers.iter().filter(|a| matches!(a, Ok(0))).count();
        for (i, answer) in answers.iter().enumerate() {
            if let Err(err) = answer {
                tracing::warn!(redis = self.nodes.name(i), error = %err, "lock: Redis did not answer");
            }
        }
        let fence = granted.iter().map(|(_, f)| *f).max().unwrap_or(0);
        let lock = Lock {
            user,
            profile,
            token,
            fence,
        };
        let mut holders = granted.len();
        // Servers whose counter is behind the fence must catch up before
        // the lock counts (see the module doc).
        let behind: Vec<usize> = granted
            .iter()
            .filter(|(_, f)| *f < fence)
            .map(|(i, _)| *i)
            .collect();
        if holders >= self.nodes.quorum() && !behind.is_empty() {
            let raised = self
                .nodes
                .on(&behind, |mut conn| {
                    let (key, fence_key, token) = (&key, &fence_key, &token_text);
                    async move {
                        redis::Script::new(RAISE_FENCE)
                            .key(key)
                            .key(fence_key)
                            .arg(token)
                            .arg(fence)
                            .invoke_async::<u64>(&mut conn)
                            .await
                    }
                })
                .await;
            holders -= raised.iter().filter(|r| !matches!(r, Ok(1))).count();
        }
        // Redlock's validity check: a lock that took most of its TTL to
        // take may already be expiring on the first servers.
        let in_time = started.elapsed() < self.ttl / 2;
        if holders >= self.nodes.quorum() && in_time {
            return Ok(lock);
        }
        if !granted.is_empty() {
            self.release(std::slice::from_ref(&lock)).await;
        }
        if busy > 0 && busy + granted.len() >= self.nodes.quorum() {
            return Err(LockError::Busy);
        }
        Err(LockError::NoQuorum {
            granted_or_busy: busy + granted.len(),
            servers: self.nodes.len(),
            needed: self.nodes.quorum(),
        })
    }

    /// Extends every lock in `locks` by the TTL; one outcome per lock, in
    /// order. One script call per server per [`LOCKS_PER_CALL`] locks.
    pub async fn refresh(&self, locks: &[Lock]) -> Vec<Refresh> {
        let mut outcomes = Vec::with_capacity(locks.len());
        let ttl_ms = self.ttl.as_millis() as u64;
        for chunk in locks.chunks(LOCKS_PER_CALL) {
            let answers = self
                .per_lock_script::<Vec<i64>>(REFRESH, Some(ttl_ms), chunk)
                .await;
            outcomes.extend((0..chunk.len()).map(|i| {
                let held = answers
                    .iter()
                    .filter(|a| matches!(a, Ok(v) if v.get(i) == Some(&1)))
                    .count();
                let gone = answers
                    .iter()
                    .filter(|a| matches!(a, Ok(v) if v.get(i) == Some(&0)))
                    .count();
                if held >= self.nodes.quorum() {
                    Refresh::Held
                } else if gone > self.nodes.len() - self.nodes.quorum() {
                    Refresh::Lost
                } else {
                    Refresh::Unknown
                }
            }));
        }
        outcomes
    }

    /// Releases `locks` on every server that still holds them for us, one
    /// script call per server per [`LOCKS_PER_CALL`] locks. A server that
    /// does not answer lets them expire by their TTL.
    pub async fn release(&self, locks: &[Lock]) {
        for chunk in locks.chunks(LOCKS_PER_CALL) {
            let answers = self.per_lock_script::<u64>(RELEASE, None, chunk).await;
            for (i, answer) in answers.iter().enumerate() {
                if let Err(err) = answer {
                    tracing::debug!(redis = self.nodes.name(i), locks = chunk.len(), error = %err, "lock release: Redis did not answer; the TTL will");
                }
            }
        }
    }

    /// Runs `script` on every server with each lock's key and token (after
    /// `first_arg`, when given); one answer per server.
    async fn per_lock_script<T: redis::FromRedisValue>(
        &self,
        script: &str,
        first_arg: Option<u64>,
        locks: &[Lock],
    ) -> Vec<Result<T, redis::RedisError>> {
        let keys: Vec<String> = locks.iter().map(|l| self.key(l.user, l.profile)).collect();
        let script = redis::Script::new(script);
        self.nodes
            .on_each(|mut conn: ConnectionManager| {
                let (keys, script) = (&keys, &script);
                async move {
                    let mut call = script.prepare_invoke();
                    if let Some(arg) = first_arg {
                        call.arg(arg);
                    }
                    for (key, lock) in keys.iter().zip(locks) {
                        call.key(key).arg(token_text(lock.token));
                    }
                    call.invoke_async::<T>(&mut conn).await
                }
            })
            .await
    }
}

fn token_text(token: u128) -> String {
    format!("{token:032x}")
}
