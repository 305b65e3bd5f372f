//! Which edges are alive, and what a dead one held: so that the survivors
//! end a crashed edge's sessions (publish their `leave`, free their locks
//! and registry entries) seconds after it stopped, not when its locks
//! expire.
//!
//! Each run of an edge is an [`Incarnation`] (its node id and a random
//! suffix: an edge restarted under the same node id is another one). Its
//! keys, on every Redis server:
//! - `{prefix}:edges`: the set of incarnations that beat, or have yet to
//!   be reaped;
//! - `{prefix}:edge:{incarnation}:alive`: its heartbeat, set every
//!   `edges.heartbeat_interval_ms` with an expiry of `edges.dead_after_ms`;
//! - `{prefix}:edge:{incarnation}:sessions`: a hash of the locks it holds,
//!   token → `user:profile:fence`, written and dropped by the lock scripts
//!   themselves (`lock.rs`), kept as long as the locks (the session TTL,
//!   renewed by each beat);
//! - `{prefix}:edge:{incarnation}:dead`: set when a survivor declares it
//!   dead; kept [`DEAD_MARKER_TTL`]. A beat that finds it writes nothing
//!   and tells the edge (it was paused or cut off: it must end its
//!   sessions), and no lock is granted to the incarnation any more;
//! - `{prefix}:edge:{incarnation}:reaper`: the survivor ending its sessions
//!   (`SET NX` where its heartbeat is gone, on a majority, so that one
//!   does it), for at most the session TTL.
//!
//! Expiry is Redis's own clock (`PX`): edges' clocks do not need to agree.
//! With several servers an incarnation is dead when its heartbeat is gone
//! from a majority, and a claim needs a majority, as for locks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rill_domain::{ProfileId, UserId};

use crate::SessionsError;
use crate::keys::{self, EdgeKey};
use crate::lock::Lock;
use crate::nodes::Nodes;

/// How long the `dead` marker of an incarnation stays. An edge paused for
/// less than this finds it when it wakes; one paused for longer than the
/// session TTL (the bound on this, at most an hour) ends its sessions by
/// itself, having missed its beats that long.
pub const DEAD_MARKER_TTL: Duration = Duration::from_secs(3600);

/// Writes the heartbeat unless the incarnation was declared dead: 1 written,
/// 0 declared dead. KEYS: alive, sessions, dead, edges. ARGV: incarnation,
/// dead_after ms, sessions ttl ms.
const BEAT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
return 1";

/// Every incarnation in the set, and whether its heartbeat is there (1 or
/// 0). Builds the `alive` keys from ARGV[1] (fine on the independent
/// servers this crate uses; not on a Redis Cluster). KEYS: edges.
const WATCH: &str = r"
local names, alive = {}, {}
for _, edge in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  names[#names + 1] = edge
  alive[#alive + 1] = redis.call('EXISTS', ARGV[1] .. edge .. ':alive')
end
return {names, alive}";

/// Claims the reaping of a silent incarnation: 1 claimed, 0 it beats
/// here, -1 another survivor has it. KEYS: alive, reaper. ARGV: reaper,
/// claim ttl ms.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
return 1";

/// Gives a claim back (if still ours). KEYS: reaper. ARGV: reaper.
const UNCLAIM: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Forgets a reaped incarnation; its `dead` marker stays. KEYS: sessions,
/// reaper, edges. ARGV: reaper, incarnation.
const FORGET: &str = r"
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1";

/// An edge that stops cleanly: its heartbeat goes; so does its entry, if it
/// released every lock (else a survivor reaps what is left, at once).
/// KEYS: alive, sessions, edges. ARGV: incarnation.
const RETIRE: &str = r"
redis.call('DEL', KEYS[1])
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0";

/// One run of one edge: its node id, `~` and 16 random hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Incarnation(Arc<str>);

impl Incarnation {
    /// A new incarnation of the edge named `node_id`.
    pub fn new(node_id: &str) -> Self {
        Self(format!("{node_id}~{:016x}", rand::random::<u64>()).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Incarnation({})", self.0)
    }
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// A majority has it.
    Alive,
    /// A server says another edge declared this incarnation dead.
    DeclaredDead,
    /// Too few servers answered.
    Unknown,
}

/// The heartbeats of every edge, and what each holds.
#[derive(Clone)]
pub struct Edges {
    nodes: Nodes,
    prefix: String,
    dead_after: Duration,
    session_ttl: Duration,
}

impl std::fmt::Debug for Edges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edges")
            .field("nodes", &self.nodes)
            .field("dead_after", &self.dead_after)
            .finish_non_exhaustive()
    }
}

impl Edges {
    /// Heartbeats that expire after `dead_after`; records kept as long as
    /// the locks they list (`session_ttl`), which is also how long a
    /// survivor may take to end a dead edge's sessions.
    pub fn new(nodes: Nodes, prefix: &str, dead_after: Duration, session_ttl: Duration) -> Self {
        Self {
            nodes,
            prefix: prefix.to_owned(),
            dead_after,
            session_ttl,
        }
    }

    fn key(&self, edge: &Incarnation, what: EdgeKey) -> String {
        keys::edge(&self.prefix, edge, what)
    }

    /// Writes `me`'s heartbeat on every server (unless it was declared
    /// dead), and keeps its records as long again as the locks. One script
    /// call per server.
    pub async fn beat(&self, me: &Incarnation) -> Beat {
        let script = redis::Script::new(BEAT);
        let mut call = script.prepare_invoke();
        call.key(self.key(me, EdgeKey::Alive))
            .key(self.key(me, EdgeKey::Sessions))
            .key(self.key(me, EdgeKey::Dead))
            .key(keys::edges(&self.prefix))
            .arg(me.as_str())
            .arg(self.dead_after.as_millis() as u64)
            .arg(self.session_ttl.as_millis() as u64);
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
        if answers.iter().any(|a| matches!(a, Ok(0))) {
            Beat::DeclaredDead
        } else if answers.iter().filter(|a| matches!(a, Ok(1))).count() >= self.nodes.quorum() {
            Beat::Alive
        } else {
            Beat::Unknown
        }
    }

    /// The incarnations other than `me` whose heartbeat is gone from a
    /// majority of the servers. One script call per server.
    pub async fn silent(&self, me: &Incarnation) -> Result<Vec<Incarnation>, SessionsError> {
        let script = redis::Script::new(WATCH);
        let mut call = script.prepare_invoke();
        call.key(keys::edges(&self.prefix))
            .arg(keys::edge_prefix(&self.prefix));
        debug_assert_eq!(EdgeKey::Alive.suffix(), "alive", "WATCH appends :alive");
        let answers: Vec<(Vec<String>, Vec<i64>)> = self
            .nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async(&mut conn).await }
            })
            .await
            .into_iter()
            .flatten()
            .collect();
        self.nodes.require_majority(answers.len())?;
        // Servers where each incarnation beats; listed or not, a server that
        // answered without its heartbeat counts against it.
        let mut beating: BTreeMap<String, usize> = BTreeMap::new();
        for (names, alive) in &answers {
            for (name, alive) in names.iter().zip(alive) {
                *beating.entry(name.clone()).or_default() += usize::from(*alive == 1);
            }
        }
        Ok(beating
            .into_iter()
            .filter(|(name, beats)| {
                name != me.as_str() && answers.len() - beats >= self.nodes.quorum()
            })
            .map(|(name, _)| Incarnation(name.into()))
            .collect())
    }

    /// Claims the reaping of `dead` for `me`, if its heartbeat is still
    /// gone, and marks it dead; true when a majority granted the claim
    /// and took the mark (then `me` alone ends its sessions, and `dead`
    /// takes no more locks: see [`crate::lock`]). The mark comes only after
    /// a majority claim, so that a claim lost in a race with the edge's
    /// own heartbeat does not fence an edge that lives; a claim that fails
    /// is given back.
    pub async fn claim(&self, dead: &Incarnation, me: &Incarnation) -> bool {
        let script = redis::Script::new(CLAIM);
        let mut call = script.prepare_invoke();
        call.key(self.key(dead, EdgeKey::Alive))
            .key(self.key(dead, EdgeKey::Reaper))
            .arg(me.as_str())
            .arg(self.session_ttl.as_millis() as u64);
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
        let granted = answers.iter().filter(|a| matches!(a, Ok(1))).count();
        if granted >= self.nodes.quorum() {
            let mut pipe = redis::pipe();
            pipe.pset_ex(
                self.key(dead, EdgeKey::Dead),
                me.as_str(),
                DEAD_MARKER_TTL.as_millis() as u64,
            )
            .ignore();
            if self.nodes.query_majority::<()>(&pipe).await.is_ok() {
                return true;
            }
        }
        if granted > 0 {
            self.unclaim(dead, me).await;
        }
        false
    }

    /// Gives back `me`'s claim on `dead` (to be tried again later: the
    /// `dead` marker stays).
    pub async fn unclaim(&self, dead: &Incarnation, me: &Incarnation) {
        let script = redis::Script::new(UNCLAIM);
        let mut call = script.prepare_invoke();
        call.key(self.key(dead, EdgeKey::Reaper)).arg(me.as_str());
        self.nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
    }

    /// The locks `dead` held, from every server (a lock is recorded where
    /// it was granted: a majority), each once, with its largest fence.
    pub async fn sessions_of(&self, dead: &Incarnation) -> Result<Vec<Lock>, SessionsError> {
        let key = self.key(dead, EdgeKey::Sessions);
        let mut pipe = redis::pipe();
        pipe.hgetall(&key);
        let answers: Vec<(BTreeMap<String, String>,)> = self.nodes.query_majority(&pipe).await?;
        let mut locks: BTreeMap<u128, Lock> = BTreeMap::new();
        let mut bad = BTreeSet::new();
        for (records,) in answers {
            for (token, record) in records {
                let Some(lock) = parse_record(dead, &token, &record) else {
                    bad.insert(token);
                    continue;
                };
                locks
                    .entry(lock.token)
                    .and_modify(|l| l.fence = l.fence.max(lock.fence))
                    .or_insert(lock);
            }
        }
        if !bad.is_empty() {
            tracing::warn!(edge = %dead, records = bad.len(), "unreadable session records skipped");
        }
        Ok(locks.into_values().collect())
    }

    /// Forgets `dead` once its sessions are ended: its records, its place
    /// in the set, `me`'s claim. Its `dead` marker stays.
    pub async fn forget(&self, dead: &Incarnation, me: &Incarnation) {
        let script = redis::Script::new(FORGET);
        let mut call = script.prepare_invoke();
        call.key(self.key(dead, EdgeKey::Sessions))
            .key(self.key(dead, EdgeKey::Reaper))
            .key(keys::edges(&self.prefix))
            .arg(me.as_str())
            .arg(dead.as_str());
        self.nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
    }

    /// `me` stops cleanly, its locks released: its heartbeat goes, and its
    /// entry with it unless records are left (which a survivor then ends
    /// at once).
    pub async fn retire(&self, me: &Incarnation) {
        let script = redis::Script::new(RETIRE);
        let mut call = script.prepare_invoke();
        call.key(self.key(me, EdgeKey::Alive))
            .key(self.key(me, EdgeKey::Sessions))
            .key(keys::edges(&self.prefix))
            .arg(me.as_str());
        let answers = self
            .nodes
            .on_each(|mut conn| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
        if answers.iter().any(|a| matches!(a, Ok(0))) {
            tracing::info!(edge = %me, "some session records are left: another edge will end them");
        }
    }
}

/// A record of the `sessions` hash: the token (32 hex digits) →
/// `user:profile:fence`.
fn parse_record(holder: &Incarnation, token: &str, record: &str) -> Option<Lock> {
    let token = u128::from_str_radix(token, 16).ok()?;
    let mut parts = record.split(':');
    let user: UserId = parts.next()?.parse().ok()?;
    let profile: ProfileId = parts.next()?.parse().ok()?;
    let fence: u64 = parts.next()?.parse().ok()?;
    Some(Lock {
        user,
        profile,
        token,
        fence,
        holder: holder.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_of_one_node_differ() {
        let (a, b) = (Incarnation::new("edge-1"), Incarnation::new("edge-1"));
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("edge-1~"), "{a}");
    }

    #[test]
    fn records_parse_and_bad_ones_are_refused() {
        let holder = Incarnation::new("edge-1");
        let (user, profile) = (UserId::random(), ProfileId::random());
        let token = format!("{:032x}", 7u128);
        let lock = parse_record(&holder, &token, &format!("{user}:{profile}:42")).expect("parses");
        assert_eq!(
            (lock.user, lock.profile, lock.token, lock.fence),
            (user, profile, 7, 42)
        );
        assert!(parse_record(&holder, "zz", &format!("{user}:{profile}:42")).is_none());
        assert!(parse_record(&holder, &token, &format!("{user}:{profile}")).is_none());
        assert!(parse_record(&holder, &token, "a:b:1").is_none());
    }
}
