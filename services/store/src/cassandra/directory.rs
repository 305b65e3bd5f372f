//! Applying directory events: users, profiles, memberships, and the tables
//! derived from them (`profiles_by_user`, `members_by_profile`,
//! `multi_profile_users`, `test_data_items`; a deleted user's account).
//!
//! Every step is an idempotent write, ordered so that a replay, or a retry
//! after a failure half-way, ends in the same state. Deletes remove the
//! entity's row first and its memberships after; binds write the
//! membership first and check the user and profile after. So, with quorum
//! reads and writes, a delete and a bind that race (in two consumers) cannot
//! both miss each other, and no membership outlives its user or profile.

use rill_domain::{DirectoryChange, Profile, ProfileId, User, UserId};
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::CassandraStore;
use super::rows;
use super::statements::cql_limit;
use crate::StoreError;

/// `test_data_items.kind` of users and of profiles.
pub(super) const USER_KIND: &str = "user";
pub(super) const PROFILE_KIND: &str = "profile";

/// A user bound to this many profiles or more is suggested.
const SUGGESTED_AT: usize = 2;

impl CassandraStore {
    pub(super) async fn apply_change(&self, change: &DirectoryChange) -> Result<(), StoreError> {
        match change {
            DirectoryChange::UserUpserted(user) => self.upsert_user(user).await,
            DirectoryChange::UserDeleted(id) => self.delete_user(*id).await,
            DirectoryChange::ProfileUpserted(profile) => self.upsert_profile(profile).await,
            DirectoryChange::ProfileDeleted(id) => self.delete_profile(*id).await,
            DirectoryChange::Bound { user, profile } => self.bind(*user, *profile).await,
            DirectoryChange::Unbound { user, profile } => self.unbind(*user, *profile).await,
            // Logins live in Redis; their ends reach only the edges.
            DirectoryChange::LoginsEnded { .. } => Ok(()),
        }
    }

    /// Writes the user. An existing user keeps its first `created_at_ms`
    /// (as in the SQLite backend: an upsert renames, it does not re-create).
    async fn upsert_user(&self, user: &User) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = user.id.as_uuid();
        let created = self.created_at(&s.user_created_at, id).await?;
        let created_at_ms = created.flatten().unwrap_or(user.created_at_ms);
        self.run(
            &s.user_insert,
            (id, user.name.as_str(), created_at_ms, user.test_data),
            "upsert user",
        )
        .await?;
        self.mark_test_data(USER_KIND, id, user.test_data).await
    }

    async fn upsert_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = profile.id.as_uuid();
        let created = self.created_at(&s.profile_created_at, id).await?;
        let created_at_ms = created.flatten().unwrap_or(profile.created_at_ms);
        self.run(
            &s.profile_insert,
            (id, profile.name.as_str(), created_at_ms, profile.test_data),
            "upsert profile",
        )
        .await?;
        self.mark_test_data(PROFILE_KIND, id, profile.test_data)
            .await
    }

    /// Deletes the user, its account (first: a deleted user cannot log in
    /// again, and its name is free) and its memberships.
    async fn delete_user(&self, user: UserId) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = user.as_uuid();
        self.delete_account_of(user).await?;
        self.run(&s.user_delete, (id,), "delete user").await?;
        let profiles = self
            .all_rows(
                &s.profiles_of_user,
                (id, i32::MAX),
                "read a user's memberships",
                |(p,): (Uuid,)| Ok(p),
            )
            .await?;
        for profile in profiles {
            self.run(&s.members_delete, (profile, id), "delete membership")
                .await?;
        }
        self.run(&s.by_user_delete_all, (id,), "delete a user's memberships")
            .await?;
        self.run(&s.multi_delete, (id,), "delete suggestion")
            .await?;
        self.mark_test_data(USER_KIND, id, false).await
    }

    /// Deletes the profile, its memberships and its history.
    async fn delete_profile(&self, profile: ProfileId) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = profile.as_uuid();
        self.run(&s.profile_delete, (id,), "delete profile").await?;
        let members = self
            .all_rows(
                &s.members_first,
                (id, i32::MAX),
                "read a profile's members",
                |(u,): (Uuid,)| Ok(u),
            )
            .await?;
        for user in members {
            self.run(&s.by_user_delete, (user, id), "delete membership")
                .await?;
            self.refresh_suggestion(user).await?;
        }
        self.run(&s.members_delete_all, (id,), "delete a profile's members")
            .await?;
        self.mark_test_data(PROFILE_KIND, id, false).await?;
        self.delete_history(profile).await
    }

    /// Binds a user to a profile if both exist; otherwise does nothing.
    async fn bind(&self, user: UserId, profile: ProfileId) -> Result<(), StoreError> {
        if !self.both_exist(user, profile).await? {
            tracing::debug!(user_id = %user, profile_id = %profile, "store: bind of an unknown user or profile ignored");
            return Ok(());
        }
        let s = &self.statements;
        let (u, p) = (user.as_uuid(), profile.as_uuid());
        self.run(&s.by_user_insert, (u, p), "bind").await?;
        self.run(&s.members_insert, (p, u), "bind").await?;
        // A delete may have run between the check and the writes, and missed
        // the membership they made: look again now that it is visible.
        if self.both_exist(user, profile).await? {
            self.refresh_suggestion(u).await
        } else {
            self.unbind(user, profile).await
        }
    }

    async fn unbind(&self, user: UserId, profile: ProfileId) -> Result<(), StoreError> {
        let s = &self.statements;
        let (u, p) = (user.as_uuid(), profile.as_uuid());
        self.run(&s.by_user_delete, (u, p), "unbind").await?;
        self.run(&s.members_delete, (p, u), "unbind").await?;
        self.refresh_suggestion(u).await
    }

    /// Lists the user in `multi_profile_users` if, after a change to its
    /// memberships, it is bound to two or more profiles; unlists it if not.
    async fn refresh_suggestion(&self, user: Uuid) -> Result<(), StoreError> {
        let s = &self.statements;
        let result = self
            .run(
                &s.profiles_of_user,
                (user, cql_limit(SUGGESTED_AT)),
                "count a user's memberships",
            )
            .await?;
        let bound = rows::collect(result, |(p,): (Uuid,)| Ok(p))?.len();
        if bound >= SUGGESTED_AT {
            self.run(&s.multi_insert, (user,), "list suggestion")
                .await?;
        } else {
            self.run(&s.multi_delete, (user,), "unlist suggestion")
                .await?;
        }
        Ok(())
    }

    async fn mark_test_data(
        &self,
        kind: &str,
        id: Uuid,
        test_data: bool,
    ) -> Result<(), StoreError> {
        let s = &self.statements;
        if test_data {
            self.run(&s.test_data_insert, (kind, id), "mark test data")
                .await?;
        } else {
            self.run(&s.test_data_delete, (kind, id), "unmark test data")
                .await?;
        }
        Ok(())
    }

    /// `None` when the row does not exist; `Some(None)` when it exists
    /// without a creation time.
    async fn created_at(
        &self,
        statement: &PreparedStatement,
        id: Uuid,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let result = self.run(statement, (id,), "read creation time").await?;
        rows::first(result, |(ms,): (Option<i64>,)| Ok(ms))
    }

    async fn both_exist(&self, user: UserId, profile: ProfileId) -> Result<bool, StoreError> {
        let s = &self.statements;
        let (user, profile) = tokio::try_join!(
            self.created_at(&s.user_created_at, user.as_uuid()),
            self.created_at(&s.profile_created_at, profile.as_uuid()),
        )?;
        Ok(user.is_some() && profile.is_some())
    }
}
