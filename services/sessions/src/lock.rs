//! The live-session lock: at most one live session per (user, profile) in
//! the whole cluster, over one Redis or a majority of several (Redlock).
//!
//! Taking the lock sets `{prefix}:lock:{user}:{profile}` to a random token
//! with `NX` and a TTL, on every server at once; it is held when a majority
//! said yes within the TTL. A refresh or a release first compares the token
//! (in a Lua script, atomically), so an edge can never extend or drop a lock
//! that expired and was taken by another.
//!
//! Each lock is held by one edge incarnation (`edges.rs`), which keeps a
//! record of it (token → pair and fence) in its `sessions` hash, written by
//! the same script that takes the lock and dropped by the one that releases
//! it: no extra round trip. A survivor that finds the incarnation dead
//! reads those records and ends the sessions for it ([`LockManager::take_over`],
//! then [`LockManager::release`]). Taking a lock fails on a server where
//! the incarnation was declared dead, so a paused edge that wakes up cannot
//! add a session its reaper will never see.
//!
//! The registry entries of a session (`registry.rs`) follow its lock: a
//! refresh re-adds them only while the lock holds our token, and a release
//! drops them unless a newer session holds the pair; so an edge that lost
//! its locks (declared dead, paused past the TTL) never brings its old
//! entries back, nor removes a newer session's.
//!
//! A lock that a server no longer has at all (it restarted without its
//! data, or the lock expired while the server was away) is taken again by
//! the refresh, with its token, fence and record, unless its holder was
//! declared dead: nobody else holds the pair there, and the session is
//! live. So a Redis restarted empty (or paused past the locks' expiry)
//! ends no session; the locks are back with the next refresh.
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

use crate::edges::Incarnation;
use crate::keys::{self, EdgeKey};
use crate::nodes::Nodes;

/// Takes the lock, bumps the fence counter and records the lock in the
/// holder's `sessions` hash; returns the fence, 0 when the lock is held by
/// someone else, -1 when the holder was declared dead.
/// KEYS: lock, fence counter, holder's sessions, holder's dead marker.
/// ARGV: token, ttl ms, fence floor, "user:profile".
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[4]) == 1 then
  return -1
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
local floor = tonumber(ARGV[3])
if fence < floor then fence = floor end
redis.call('SET', KEYS[2], string.format('%d', fence))
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4] .. ':' .. string.format('%d', fence))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
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

// The per-lock scripts below take five KEYS a lock (the lock,
// `launched:{user}`, `live:{profile}`, the holder's `sessions`, the
// holder's `dead` mark) and, after their fixed ARGV, four ARGV a lock
// (token, user, profile, fence): see `LockManager::per_lock_script`.

/// Extends each lock whose value is its token by ARGV[1] ms; takes a lock
/// that is gone (the server lost it) again with its token, and its
/// holder's record of it, unless the holder was declared dead; and re-adds
/// the registry entries (scored ARGV[2], the expiry in ms) of both. One 1
/// (extended), 2 (taken again) or 0 (another's, or the holder is dead) a
/// lock.
const REFRESH: &str = r"
local out = {}
for i = 1, #KEYS / 5 do
  local k, a = (i - 1) * 5, 2 + (i - 1) * 4
  local holder = redis.call('GET', KEYS[k + 1])
  if holder == ARGV[a + 1] then
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[1])
    out[i] = 1
  elseif not holder and redis.call('EXISTS', KEYS[k + 5]) == 0 then
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[1])
    redis.call('HSET', KEYS[k + 4], ARGV[a + 1], ARGV[a + 2] .. ':' .. ARGV[a + 3] .. ':' .. ARGV[a + 4])
    redis.call('PEXPIRE', KEYS[k + 4], ARGV[1])
    out[i] = 2
  else
    out[i] = 0
  end
  if out[i] > 0 then
    redis.call('ZADD', KEYS[k + 2], ARGV[2], ARGV[a + 3])
    redis.call('PEXPIRE', KEYS[k + 2], ARGV[1])
    redis.call('ZADD', KEYS[k + 3], ARGV[2], ARGV[a + 2])
    redis.call('PEXPIRE', KEYS[k + 3], ARGV[1])
  end
end
return out";

/// Deletes each lock that still holds our token; drops its registry
/// entries unless another token holds the pair; forgets the holder's
/// record. How many locks it deleted.
const RELEASE: &str = r"
local deleted = 0
for i = 1, #KEYS / 5 do
  local k, a = (i - 1) * 5, (i - 1) * 4
  local holder = redis.call('GET', KEYS[k + 1])
  if holder == ARGV[a + 1] then
    deleted = deleted + redis.call('DEL', KEYS[k + 1])
  end
  if holder == ARGV[a + 1] or not holder then
    redis.call('ZREM', KEYS[k + 2], ARGV[a + 3])
    redis.call('ZREM', KEYS[k + 3], ARGV[a + 2])
  end
  redis.call('HDEL', KEYS[k + 4], ARGV[a + 1])
end
return deleted";

/// For a survivor ending a dead edge's sessions: keeps each lock that
/// still holds the dead edge's token, or that expired (set again with that
/// token), for ARGV[1] ms, so that no new session of the pair starts before
/// the leave is out; one 1 (held for the leave) or 0 (a newer session
/// holds the pair) a lock.
const TAKE_OVER: &str = r"
local out = {}
for i = 1, #KEYS / 5 do
  local k, a = (i - 1) * 5, 1 + (i - 1) * 4
  local holder = redis.call('GET', KEYS[k + 1])
  if holder == ARGV[a + 1] then
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[1])
    out[i] = 1
  elseif not holder then
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out";

/// Locks refreshed, taken over or released by one script call, so that no
/// call holds a server for long: a refresh runs seven commands a lock
/// (the registry entries ride along; ten for a lock taken again), 1,750
/// a call.
const LOCKS_PER_CALL: usize = 250;

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub user: UserId,
    pub profile: ProfileId,
    /// Random; kept as a number (an edge holds thousands of locks), sent as
    /// 32 hex digits.
    pub(crate) token: u128,
    /// Larger than the fence of every earlier holder of this pair's lock.
    pub fence: u64,
    /// The edge incarnation that took it, whose record of it goes with it.
    pub holder: Incarnation,
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
    /// The edge incarnation asking was declared dead by another edge (it
    /// was paused or cut off): it takes no more locks.
    #[error("this edge was declared dead by another edge; it takes no more locks")]
    HolderDead,
}

/// What a refresh (or a take-over) found out about one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A majority extended it (or, where a server had lost it, took it
    /// again).
    Held,
    /// A majority no longer holds it for us: another session has the
    /// pair, or the holder was declared dead.
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

    /// The lock of (user, profile) for edge incarnation `holder`, if a
    /// majority grants it.
    pub async fn acquire(
        &self,
        holder: &Incarnation,
        user: UserId,
        profile: ProfileId,
    ) -> Result<Lock, LockError> {
        let started = Instant::now();
        let key = keys::lock(&self.prefix, user, profile);
        let fence_key = keys::fence(&self.prefix);
        let sessions_key = keys::edge(&self.prefix, holder, EdgeKey::Sessions);
        let dead_key = keys::edge(&self.prefix, holder, EdgeKey::Dead);
        let token = rand::random::<u128>();
        let token_text = token_text(token);
        let record = format!("{user}:{profile}");
        let ttl_ms = self.ttl.as_millis() as u64;
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let (key, fence_key, token) = (&key, &fence_key, &token_text);
                let (sessions_key, dead_key, record) = (&sessions_key, &dead_key, &record);
                async move {
                    redis::Script::new(ACQUIRE)
                        .key(key)
                        .key(fence_key)
                        .key(sessions_key)
                        .key(dead_key)
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(rill_runtime::clock::now_ms())
                        .arg(record)
                        .invoke_async::<i64>(&mut conn)
                        .await
                }
            })
            .await;
        let granted: Vec<(usize, u64)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Ok(fence) if *fence > 0 => Some((i, *fence as u64)),
                _ => None,
            })
            .collect();
        let busy = answers.iter().filter(|a| matches!(a, Ok(0))).count();
        let dead = answers.iter().any(|a| matches!(a, Ok(-1)));
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
            holder: holder.clone(),
        };
        let mut holders = granted.len();
        // Servers whose counter is behind the fence must catch up before
        // the lock counts (see the module doc).
        let behind: Vec<usize> = granted
            .iter()
            .filter(|(_, f)| *f < fence)
            .map(|(i, _)| *i)
            .collect();
        if holders >= self.nodes.quorum() && !behind.is_empty() && !dead {
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
        if holders >= self.nodes.quorum() && in_time && !dead {
            return Ok(lock);
        }
        if !granted.is_empty() {
            self.release(std::slice::from_ref(&lock)).await;
        }
        if answers.iter().any(Result::is_err) {
            // A server that did not answer in time may still run the
            // script later (it was paused, say, with our call in its
            // socket): the lock would then stay, held by nobody, for a
            // whole TTL. The release follows it on the same connection;
            // in the background, so that the refusal is not held up by a
            // server that does not answer.
            let manager = self.clone();
            tokio::spawn(async move { manager.release_unanswered(&lock).await });
        }
        if dead {
            return Err(LockError::HolderDead);
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

    /// Extends every lock in `locks` by the TTL, and the registry entries
    /// of those still ours with them; one outcome per lock, in order. One
    /// script call per server per [`LOCKS_PER_CALL`] locks.
    pub async fn refresh(&self, locks: &[Lock]) -> Vec<Refresh> {
        let ttl_ms = self.ttl.as_millis() as i64;
        let mut outcomes = Vec::with_capacity(locks.len());
        for chunk in locks.chunks(LOCKS_PER_CALL) {
            let expires = rill_runtime::clock::now_ms() + ttl_ms;
            let answers = self
                .per_lock_script::<Vec<i64>>(REFRESH, &[ttl_ms, expires], chunk)
                .await;
            for (i, answer) in answers.iter().enumerate() {
                let taken_again = answer
                    .as_ref()
                    .map_or(0, |a| a.iter().filter(|&&v| v == 2).count());
                if taken_again > 0 {
                    tracing::warn!(
                        redis = self.nodes.name(i),
                        locks = taken_again,
                        "live-session locks were gone from a Redis server (restarted without its data?): taken again"
                    );
                }
            }
            outcomes.extend((0..chunk.len()).map(|i| self.outcome(&answers, i)));
        }
        outcomes
    }

    /// For a survivor ending the sessions of a dead edge: holds each of
    /// `locks` (the dead edge's) for the TTL where it is still the dead
    /// edge's or expired. `Held`: no newer session has the pair, and none
    /// can start before [`LockManager::release`]; `Lost`: a newer session
    /// has it (leave it alone); `Unknown`: too few servers answered.
    pub async fn take_over(&self, locks: &[Lock]) -> Vec<Refresh> {
        let ttl_ms = self.ttl.as_millis() as i64;
        let mut outcomes = Vec::with_capacity(locks.len());
        for chunk in locks.chunks(LOCKS_PER_CALL) {
            let answers = self
                .per_lock_script::<Vec<i64>>(TAKE_OVER, &[ttl_ms], chunk)
                .await;
            outcomes.extend((0..chunk.len()).map(|i| self.outcome(&answers, i)));
        }
        outcomes
    }

    /// What the servers' answers say of lock `i`: 1 (held) or 2 (taken
    /// again) is ours, 0 is not.
    fn outcome(&self, answers: &[Result<Vec<i64>, redis::RedisError>], i: usize) -> Refresh {
        let said = |ours: bool| {
            answers
                .iter()
                .filter(|a| matches!(a, Ok(got) if got.get(i).is_some_and(|&v| (v > 0) == ours)))
                .count()
        };
        if said(true) >= self.nodes.quorum() {
            Refresh::Held
        } else if said(false) > self.nodes.len() - self.nodes.quorum() {
            Refresh::Lost
        } else {
            Refresh::Unknown
        }
    }

    /// Releases `locks` on every server that still holds them for us, with
    /// their registry entries (unless a newer session holds the pair) and
    /// their holders' records; one script call per server per
    /// [`LOCKS_PER_CALL`] locks. A server that does not answer lets them
    /// expire by their TTL.
    pub async fn release(&self, locks: &[Lock]) {
        for chunk in locks.chunks(LOCKS_PER_CALL) {
            let answers = self.per_lock_script::<u64>(RELEASE, &[], chunk).await;
            for (i, answer) in answers.iter().enumerate() {
                if let Err(err) = answer {
                    tracing::debug!(redis = self.nodes.name(i), locks = chunk.len(), error = %err, "lock release: Redis did not answer; the TTL will");
                }
            }
        }
    }

    /// Runs `script` on every server with `fixed` first in ARGV, then, per
    /// lock, five KEYS (the lock, `launched:{user}`, `live:{profile}`, the
    /// holder's `sessions` and `dead` mark) and four ARGV (token, user,
    /// profile, fence); one answer per server.
    async fn per_lock_script<T: redis::FromRedisValue>(
        &self,
        script: &str,
        fixed: &[i64],
        locks: &[Lock],
    ) -> Vec<Result<T, redis::RedisError>> {
        let (keys, args) = self.per_lock_params(locks);
        let script = redis::Script::new(script);
        self.nodes
            .on_each(|mut conn: ConnectionManager| {
                let (keys, args, script) = (&keys, &args, &script);
                async move {
                    let mut call = script.prepare_invoke();
                    for arg in fixed {
                        call.arg(*arg);
                    }
                    for (keys, args) in keys.iter().zip(args) {
                        for key in keys {
                            call.key(key);
                        }
                        for arg in args {
                            call.arg(arg);
                        }
                    }
                    call.invoke_async::<T>(&mut conn).await
                }
            })
            .await
    }

    /// Releases `lock` after an acquisition that some servers did not
    /// answer, with the script's text (`EVAL`) rather than its hash: the
    /// call may wait in the socket of a paused server, behind the
    /// acquisition, and a server that never released a lock before has
    /// no `RELEASE` script to run by its hash.
    async fn release_unanswered(&self, lock: &Lock) {
        let (keys, args) = self.per_lock_params(std::slice::from_ref(lock));
        let mut call = redis::cmd("EVAL");
        call.arg(RELEASE).arg(keys[0].len());
        call.arg(&keys[0][..]).arg(&args[0][..]);
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.query_async::<u64>(&mut conn).await }
            })
            .await;
        for (i, answer) in answers.iter().enumerate() {
            if let Err(err) = answer {
                tracing::debug!(redis = self.nodes.name(i), error = %err, "release of an unanswered lock: Redis did not answer; it runs when the server does");
            }
        }
    }

    /// Per lock, the five KEYS and four ARGV of the per-lock scripts.
    #[allow(clippy::type_complexity)]
    fn per_lock_params(&self, locks: &[Lock]) -> (Vec<[String; 5]>, Vec<[String; 4]>) {
        let p = &self.prefix;
        let keys: Vec<[String; 5]> = locks
            .iter()
            .map(|l| {
                [
                    keys::lock(p, l.user, l.profile),
                    keys::launched(p, l.user),
                    keys::live(p, l.profile),
                    keys::edge(p, &l.holder, EdgeKey::Sessions),
                    keys::edge(p, &l.holder, EdgeKey::Dead),
                ]
            })
            .collect();
        let args: Vec<[String; 4]> = locks
            .iter()
            .map(|l| {
                [
                    token_text(l.token),
                    l.user.to_string(),
                    l.profile.to_string(),
                    l.fence.to_string(),
                ]
            })
            .collect();
        (keys, args)
    }
}

pub(crate) fn token_text(token: u128) -> String {
    format!("{token:032x}")
}
