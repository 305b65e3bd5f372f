//! Reading the directory.
//!
//! Pages of users and profiles follow the partition token
//! (`token(id) > token(after)`), the only order a Cassandra table can be
//! scanned in; members follow the clustering order of their profile's
//! partition.

use std::collections::HashMap;

use rill_domain::{Profile, ProfileId, User, UserId};
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::CassandraStore;
use super::directory::{PROFILE_KIND, USER_KIND};
use super::rows::{self, EntityRow};
use super::statements::cql_limit;
use crate::{Page, PageRequest, StoreError};

/// Ids per `WHERE id IN ?` query: each id is a partition the coordinator
/// fans out to, so the list is kept short.
const IN_CHUNK: usize = 50;

/// A page of `items` read with `LIMIT limit`: there may be a next page
/// only when the limit was reached.
pub(super) fn page<T, Id>(items: Vec<T>, limit: usize, id: impl Fn(&T) -> Id) -> Page<T, Id> {
    let next = if items.len() >= limit {
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

/// `found` in the order of `ids`, skipping ids that were not found.
pub(super) fn in_order<T>(ids: &[Uuid], mut found: HashMap<Uuid, T>) -> Vec<T> {
    ids.iter().filter_map(|id| found.remove(id)).collect()
}

impl CassandraStore {
    pub(super) async fn read_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let result = self
            .run(&self.statements.user_get, (id.as_uuid(),), "read user")
            .await?;
        rows::first(result, rows::user)
    }

    pub(super) async fn read_profile(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        let result = self
            .run(
                &self.statements.profile_get,
                (id.as_uuid(),),
                "read profile",
            )
            .await?;
        rows::first(result, rows::profile)
    }

    pub(super) async fn read_users(
        &self,
        request: PageRequest<UserId>,
    ) -> Result<Page<User, UserId>, StoreError> {
        let s = &self.statements;
        let after = request.after.map(|id| id.as_uuid());
        let items = self
            .token_page(
                &s.users_first,
                &s.users_after,
                after,
                request.limit,
                rows::user,
            )
            .await?;
        Ok(page(items, request.limit, |u| u.id))
    }

    pub(super) async fn read_profiles(
        &self,
        request: PageRequest<ProfileId>,
    ) -> Result<Page<Profile, ProfileId>, StoreError> {
        let s = &self.statements;
        let after = request.after.map(|id| id.as_uuid());
        let items = self
            .token_page(
                &s.profiles_first,
                &s.profiles_after,
                after,
                request.limit,
                rows::profile,
            )
            .await?;
        Ok(page(items, request.limit, |p| p.id))
    }

    /// The profiles `user` is bound to, in the clustering order of its
    /// `profiles_by_user` partition (by profile id).
    pub(super) async fn read_profiles_of(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<Profile>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let s = &self.statements;
        let result = self
            .run(
                &s.profiles_of_user,
                (user.as_uuid(), cql_limit(limit)),
                "read memberships",
            )
            .await?;
        let ids = rows::collect(result, |(id,): (Uuid,)| Ok(id))?;
        self.entities_in(&s.profiles_in, &ids, rows::profile, |p| p.id.as_uuid())
            .await
    }

    pub(super) async fn read_members(
        &self,
        profile: ProfileId,
        request: PageRequest<UserId>,
    ) -> Result<Page<UserId, UserId>, StoreError> {
        if request.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let s = &self.statements;
        let (p, limit) = (profile.as_uuid(), cql_limit(request.limit));
        let result = match request.after {
            None => {
                self.run(&s.members_first, (p, limit), "read members")
                    .await?
            }
            Some(after) => {
                self.run(
                    &s.members_after,
                    (p, after.as_uuid(), limit),
                    "read members",
                )
                .await?
            }
        };
        let items = rows::collect(result, |(id,): (Uuid,)| Ok(UserId::from_uuid(id)))?;
        Ok(page(items, request.limit, |u| *u))
    }

    pub(super) async fn read_is_member(
        &self,
        user: UserId,
        profile: ProfileId,
    ) -> Result<bool, StoreError> {
        let values = (user.as_uuid(), profile.as_uuid());
        let result = self
            .run(&self.statements.is_member, values, "read membership")
            .await?;
        Ok(rows::first(result, |(_,): (Uuid,)| Ok(()))?.is_some())
    }

    /// Users bound to two or more profiles, from `multi_profile_users`,
    /// in token order.
    pub(super) async fn read_suggested_users(&self, limit: usize) -> Result<Vec<User>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let s = &self.statements;
        let result = self
            .run(&s.multi_scan, (cql_limit(limit),), "read suggestions")
            .await?;
        let ids = rows::collect(result, |(id,): (Uuid,)| Ok(id))?;
        self.entities_in(&s.users_in, &ids, rows::user, |u| u.id.as_uuid())
            .await
    }

    pub(super) async fn read_test_data(&self) -> Result<(Vec<UserId>, Vec<ProfileId>), StoreError> {
        let list = &self.statements.test_data_list;
        let users = self.all_rows(list, (USER_KIND,), "read test data", |(id,): (Uuid,)| {
            Ok(UserId::from_uuid(id))
        });
        let profiles = self.all_rows(list, (PROFILE_KIND,), "read test data", |(id,): (Uuid,)| {
            Ok(ProfileId::from_uuid(id))
        });
        tokio::try_join!(users, profiles)
    }

    /// Up to `limit` users or profiles after `after` in token order.
    async fn token_page<T>(
        &self,
        first: &PreparedStatement,
        after_statement: &PreparedStatement,
        after: Option<Uuid>,
        limit: usize,
        decode: fn(EntityRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let result = match after {
            None => self.run(first, (cql_limit(limit),), "read a page").await?,
            Some(after) => {
                self.run(after_statement, (after, cql_limit(limit)), "read a page")
                    .await?
            }
        };
        rows::collect(result, decode)
    }

    /// The users or profiles with `ids`, in that order; ids without a row
    /// (deleted since they were listed) are left out.
    async fn entities_in<T>(
        &self,
        statement: &PreparedStatement,
        ids: &[Uuid],
        decode: fn(EntityRow) -> Result<T, StoreError>,
        id_of: fn(&T) -> Uuid,
    ) -> Result<Vec<T>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let result = self.run(statement, (chunk,), "read by ids").await?;
            found.extend(
                rows::collect(result, decode)?
                    .into_iter()
                    .map(|item| (id_of(&item), item)),
            );
        }
        Ok(in_order(ids, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_points_at_its_last_item() {
        let p = page(vec![1, 2, 3], 3, |n| *n);
        assert_eq!(p.next, Some(3));
        assert_eq!(p.items, vec![1, 2, 3]);
    }

    #[test]
    fn a_short_or_empty_page_is_the_last() {
        assert_eq!(page(vec![1, 2], 3, |n| *n).next, None);
        assert_eq!(page(Vec::<i32>::new(), 3, |n| *n).next, None);
        assert_eq!(
            page(Vec::<i32>::new(), 0, |n| *n).next,
            None,
            "a zero limit ends paging"
        );
    }

    #[test]
    fn rows_come_back_in_the_order_of_the_ids_without_the_missing() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let found: HashMap<Uuid, usize> = [(ids[3], 3), (ids[0], 0), (ids[2], 2)]
            .into_iter()
            .collect();
        assert_eq!(in_order(&ids, found), vec![0, 2, 3]);
    }
}
