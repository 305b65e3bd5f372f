//! Who may open a stream on, or send to, a profile: its members.
//!
//! The edge asks the store once per (user, profile) and caches a "yes" for
//! `membership_cache_secs`; directory events from Kafka keep the cache
//! current (an unbind removes the entry at once, and the hub closes the
//! user's sessions on that profile). A "no" is never cached: a user who was
//! just bound must not be refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_domain::{DirectoryChange, ProfileId, UserId};
use rill_store::Store;

/// The smallest cache size that triggers a sweep of expired entries.
const MIN_SWEEP: usize = 1024;

/// Why a user may not use a profile, or why that could not be known.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("not a member of this profile")]
    NotAMember,
    #[error("no profile with that id")]
    UnknownProfile,
    #[error("the store failed: {0}")]
    Store(#[from] rill_store::StoreError),
}

impl MembershipError {
    /// A stable name, for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAMember => "not_a_member",
            Self::UnknownProfile => "unknown_profile",
            Self::Store(_) => "store_unavailable",
        }
    }
}

#[derive(Debug)]
pub struct Membership {
    store: Arc<dyn Store>,
    cache: Mutex<Cache>,
    ttl: Duration,
}

/// Confirmed memberships and when they were confirmed.
#[derive(Debug)]
struct Cache {
    members: HashMap<(UserId, ProfileId), Instant>,
    /// The size at which expired entries are next swept out.
    sweep_at: usize,
}

impl Membership {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            cache: Mutex::new(Cache {
                members: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
            ttl,
        }
    }

    /// Ok if `user` is bound to `profile`.
    pub async fn check(&self, user: UserId, profile: ProfileId) -> Result<(), MembershipError> {
        if self.cached(user, profile) {
            return Ok(());
        }
        if self.store.is_member(user, profile).await? {
            self.remember(user, profile);
            return Ok(());
        }
        match self.store.profile(profile).await? {
            Some(_) => Err(MembershipError::NotAMember),
            None => Err(MembershipError::UnknownProfile),
        }
    }

    /// Keeps the cache current with a directory change.
    pub fn apply(&self, change: &DirectoryChange) {
        let members = &mut self.lock().members;
        match change {
            DirectoryChange::Unbound { user, profile } => {
                members.remove(&(*user, *profile));
            }
            DirectoryChange::UserDeleted(user) => members.retain(|(u, _), _| u != user),
            DirectoryChange::ProfileDeleted(profile) => members.retain(|(_, p), _| p != profile),
            // A bind needs no entry: a miss asks the store, which has it by
            // the time the api answered the bind. Caching every bind of the
            // cluster on every edge would only cost memory.
            DirectoryChange::Bound { .. }
            | DirectoryChange::LoginsEnded { .. }
            | DirectoryChange::UserUpserted(_)
            | DirectoryChange::ProfileUpserted(_) => {}
        }
    }

    /// Caches a confirmed membership. Entries nobody asks about again would
    /// stay forever, so whenever the cache has doubled since the last sweep,
    /// expired entries are dropped.
    fn remember(&self, user: UserId, profile: ProfileId) {
        let mut cache = self.lock();
        cache.members.insert((user, profile), Instant::now());
        if cache.members.len() >= cache.sweep_at {
            cache.members.retain(|_, at| at.elapsed() < self.ttl);
            cache.sweep_at = (2 * cache.members.len()).max(MIN_SWEEP);
        }
    }

    fn cached(&self, user: UserId, profile: ProfileId) -> bool {
        let members = &mut self.lock().members;
        match members.get(&(user, profile)) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                members.remove(&(user, profile));
                false
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rill_testkit::stack::TempDb;

    async fn membership(ttl: Duration) -> (Membership, TempDb) {
        let db = TempDb::new();
        let store = rill_store::open(&db.settings()).await.expect("open store");
        (Membership::new(store, ttl), db)
    }

    #[tokio::test]
    async fn expired_entries_are_swept_when_the_cache_doubles() {
        let (membership, _db) = membership(Duration::ZERO).await;
        for _ in 0..MIN_SWEEP {
            membership.remember(UserId::random(), ProfileId::random());
        }
        assert!(
            membership.lock().members.len() < MIN_SWEEP,
            "expired entries were swept"
        );
    }

    #[tokio::test]
    async fn an_unbind_forgets_the_membership() {
        let (membership, _db) = membership(Duration::from_secs(60)).await;
        let (user, profile) = (UserId::random(), ProfileId::random());
        membership.remember(user, profile);
        assert!(membership.cached(user, profile));
        membership.apply(&DirectoryChange::Unbound { user, profile });
        assert!(!membership.cached(user, profile));
    }
}
