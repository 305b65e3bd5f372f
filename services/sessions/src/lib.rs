//! Live sessions in Redis: which profiles each user has open right now
//! (launched), and who is live on each profile, across every edge.
//!
//! Each entry is a member of a sorted set scored by its expiry time (ms):
//! - `{prefix}:launched:{user}`: the profile ids the user has open;
//! - `{prefix}:live:{profile}`: the user ids live on the profile.
//!
//! The edge adds an entry when a session opens, refreshes its entries every
//! `ttl / 3`, and removes them when a session closes. Readers count only
//! entries whose expiry is in the future, so the entries of an edge that
//! died (kill -9) vanish after the TTL without anyone cleaning up.
//!
//! - [`lock`]: the one-live-session-per-pair lock (token, TTL, fencing).
//! - [`settings`]: where Redis is.

pub mod lock;
pub mod settings;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use rill_domain::{ProfileId, UserId};

pub use lock::{Lock, LockManager};
pub use settings::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis returned an invalid id: {0}")]
    BadId(#[from] rill_domain::IdError),
}

/// The cluster-wide registry of live sessions.
#[derive(Clone)]
pub struct LiveSessions {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl LiveSessions {
    /// Connects to the first Redis of `settings.urls`.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, SessionsError> {
        let client = redis::Client::open(settings.urls[0].as_str())?;
        let redis = ConnectionManager::new(client).await?;
        Ok(Self {
            redis,
            prefix: settings.key_prefix.clone(),
            ttl: Duration::from_secs(settings.session_ttl_secs),
        })
    }

    /// How often an edge must refresh its entries.
    pub fn refresh_interval(&self) -> Duration {
        self.ttl / 3
    }

    fn launched_key(&self, user: UserId) -> String {
        format!("{}:launched:{user}", self.prefix)
    }

    fn live_key(&self, profile: ProfileId) -> String {
        format!("{}:live:{profile}", self.prefix)
    }

    /// Adds (or refreshes) live sessions of (user, profile) pairs.
    pub async fn register(&self, pairs: &[(UserId, ProfileId)]) -> Result<(), SessionsError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (user, profile) in pairs {
            pipe.zadd(self.launched_key(*user), profile.to_string(), expires)
                .ignore();
            pipe.pexpire(self.launched_key(*user), self.ttl.as_millis() as i64)
                .ignore();
            pipe.zadd(self.live_key(*profile), user.to_string(), expires)
                .ignore();
            pipe.pexpire(self.live_key(*profile), self.ttl.as_millis() as i64)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Removes the live session of `user` on `profile`.
    pub async fn unregister(&self, user: UserId, profile: ProfileId) -> Result<(), SessionsError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.launched_key(user), profile.to_string())
            .ignore();
        pipe.zrem(self.live_key(profile), user.to_string()).ignore();
        pipe.query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The profiles `user` has open right now.
    pub async fn launched(&self, user: UserId) -> Result<Vec<ProfileId>, SessionsError> {
        let ids: Vec<String> = self
            .redis
            .clone()
            .zrangebyscore(self.launched_key(user), now_ms() + 1, "+inf")
            .await?;
        Ok(ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?)
    }

    /// How many users are live on `profile` right now.
    pub async fn live_on(&self, profile: ProfileId) -> Result<usize, SessionsError> {
        Ok(self
            .redis
            .clone()
            .zcount(self.live_key(profile), now_ms() + 1, "+inf")
            .await?)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
