//! Who may open a stream on, or send to, a profile: its members.
//!
//! The edge asks the store once per (user, profile) and caches a "yes" for
//! `membership.cache_ttl_secs`; directory events from Kafka keep the cache
//! current (an unbind removes the entry at once, and the hub closes the
//! user's sessions on that profile). A "no" is never cached: a user who was
//! just bound must not be refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_domain::{DirectoryChange, ProfileId, UserId};
use rill_store::Store;

use crate::error::EdgeError;

#[derive(Debug)]
pub struct Membership {
    store: Arc<dyn Store>,
    members: Mutex<HashMap<(UserId, ProfileId), Instant>>,
    ttl: Duration,
}

impl Membership {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            members: Mutex::default(),
            ttl,
        }
    }

    /// Ok if `user` is bound to `profile`; 404 if the profile does not
    /// exist, 403 if the user is not a member.
    pub async fn check(&self, user: UserId, profile: ProfileId) -> Result<(), EdgeError> {
        if self.cached(user, profile) {
            return Ok(());
        }
        if self.store.is_member(user, profile).await? {
            self.lock().insert((user, profile), Instant::now());
            return Ok(());
        }
        match self.store.profile(profile).await? {
            Some(_) => Err(EdgeError::NotAMember),
            None => Err(EdgeError::UnknownProfile),
        }
    }

    /// Whether `user` exists (for login).
    pub async fn user_exists(&self, user: UserId) -> Result<bool, EdgeError> {
        Ok(self.store.user(user).await?.is_some())
    }

    /// Keeps the cache current with a directory change.
    pub fn apply(&self, change: &DirectoryChange) {
        let mut members = self.lock();
        match change {
            DirectoryChange::Bound { user, profile } => {
                members.insert((*user, *profile), Instant::now());
            }
            DirectoryChange::Unbound { user, profile } => {
                members.remove(&(*user, *profile));
            }
            DirectoryChange::UserDeleted(user) => members.retain(|(u, _), _| u != user),
            DirectoryChange::ProfileDeleted(profile) => members.retain(|(_, p), _| p != profile),
            DirectoryChange::UserUpserted(_) | DirectoryChange::ProfileUpserted(_) => {}
        }
    }

    fn cached(&self, user: UserId, profile: ProfileId) -> bool {
        let mut members = self.lock();
        match members.get(&(user, profile)) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                members.remove(&(user, profile));
                false
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(UserId, ProfileId), Instant>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}
