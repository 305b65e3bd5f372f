//! The live-session lock: at most one live session per (user, profile) in
//! the whole cluster.
//!
//! `SET key token NX PX ttl` takes the lock with a random token; a refresh
//! or a release first checks the token (in a Lua script, atomically), so an
//! edge can never extend or drop a lock that expired and was taken by
//! another. Each acquisition gets a fencing number from `INCR`, which only
//! grows. (Not wired into the edge yet; Redlock over several Redis servers
//! comes with it.)

use std::time::Duration;

use redis::aio::ConnectionManager;
use rill_domain::{ProfileId, UserId};

use crate::SessionsError;

/// Extends the lock only if it still holds our token.
const REFRESH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the lock only if it still holds our token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub user: UserId,
    pub profile: ProfileId,
    token: String,
    /// Grows with every acquisition of this pair's lock.
    pub fence: u64,
}

/// Takes, refreshes and releases live-session locks in one Redis.
#[derive(Clone)]
pub struct LockManager {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl LockManager {
    /// Locks that expire `ttl` after their last refresh.
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, SessionsError> {
        let redis = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    fn key(&self, user: UserId, profile: ProfileId) -> String {
        format!("{}:lock:{user}:{profile}", self.prefix)
    }

    /// The lock of (user, profile), or `None` if someone holds it.
    pub async fn acquire(
        &self,
        user: UserId,
        profile: ProfileId,
    ) -> Result<Option<Lock>, SessionsError> {
        let key = self.key(user, profile);
        let token = format!("{:032x}", rand::random::<u128>());
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut self.redis.clone())
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let fence: u64 = redis::cmd("INCR")
            .arg(format!("{key}:fence"))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(Some(Lock {
            user,
            profile,
            token,
            fence,
        }))
    }

    /// Extends `lock` by the TTL; false if it was lost (expired, or taken by
    /// another since).
    pub async fn refresh(&self, lock: &Lock) -> Result<bool, SessionsError> {
        let done: i64 = redis::Script::new(REFRESH)
            .key(self.key(lock.user, lock.profile))
            .arg(&lock.token)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(done == 1)
    }

    /// Releases `lock` if it is still ours; false if it was lost.
    pub async fn release(&self, lock: &Lock) -> Result<bool, SessionsError> {
        let done: i64 = redis::Script::new(RELEASE)
            .key(self.key(lock.user, lock.profile))
            .arg(&lock.token)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(done == 1)
    }
}
