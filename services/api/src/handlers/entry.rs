//! Users and profiles are both entries of the directory: a name with an id,
//! made by a `POST` of `{"name"}` and removed by a `DELETE` of its id,
//! through the directory topic. The shape of those writes is here, once;
//! `users` and `profiles` say which kind, what they log and what they
//! answer.

use futures_util::future::BoxFuture;
use rill_domain::{DirectoryChange, IdError, Name, Profile, ProfileId, User, UserId};
use rill_store::{Store, StoreError};
use serde::Serialize;

use super::{NameBody, parse_body};
use crate::directory::{Visibility, now_ms};
use crate::error::ApiError;
use crate::state::ApiState;

/// What differs between a user and a profile when one is made, found or
/// deleted.
pub trait Entry: Serialize + Clone + Send + Sync + 'static {
    type Id: Copy + std::str::FromStr<Err = IdError> + Send + Sync + 'static;
    /// What a 404 calls it.
    const NOUN: &'static str;

    /// A new entry named `name`, made by a client now (not test data).
    fn named(name: Name) -> Self;
    fn id(&self) -> Self::Id;
    fn upserted(self) -> DirectoryChange;
    fn deleted(id: Self::Id) -> DirectoryChange;
    fn find(store: &dyn Store, id: Self::Id) -> BoxFuture<'_, Result<Option<Self>, StoreError>>;
}

impl Entry for User {
    type Id = UserId;
    const NOUN: &'static str = "user";

    fn named(name: Name) -> Self {
        Self {
            id: UserId::random(),
            name,
            created_at_ms: now_ms(),
            test_data: false,
        }
    }

    fn id(&self) -> UserId {
        self.id
    }

    fn upserted(self) -> DirectoryChange {
        DirectoryChange::UserUpserted(self)
    }

    fn deleted(id: UserId) -> DirectoryChange {
        DirectoryChange::UserDeleted(id)
    }

    fn find(store: &dyn Store, id: UserId) -> BoxFuture<'_, Result<Option<Self>, StoreError>> {
        store.user(id)
    }
}

impl Entry for Profile {
    type Id = ProfileId;
    const NOUN: &'static str = "profile";

    fn named(name: Name) -> Self {
        Self {
            id: ProfileId::random(),
            name,
            created_at_ms: now_ms(),
            test_data: false,
        }
    }

    fn id(&self) -> ProfileId {
        self.id
    }

    fn upserted(self) -> DirectoryChange {
        DirectoryChange::ProfileUpserted(self)
    }

    fn deleted(id: ProfileId) -> DirectoryChange {
        DirectoryChange::ProfileDeleted(id)
    }

    fn find(store: &dyn Store, id: ProfileId) -> BoxFuture<'_, Result<Option<Self>, StoreError>> {
        store.profile(id)
    }
}

/// Makes the entry a `{"name"}` body names, publishes it and waits until
/// the store shows it.
pub async fn create<E: Entry>(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(E, Visibility), ApiError> {
    let request: NameBody = parse_body(content_type, body)?;
    let entry = E::named(Name::parse(&request.name)?);
    let id = entry.id();
    let visibility = state
        .directory
        .write(entry.clone().upserted(), |store| async move {
            Ok(E::find(&*store, id).await?.is_some())
        })
        .await?;
    Ok((entry, visibility))
}

/// Deletes the entry with the id `id` names (404 if there is none) and
/// waits until the store no longer shows it.
pub async fn delete<E: Entry>(state: &ApiState, id: &str) -> Result<(E::Id, Visibility), ApiError> {
    let id = existing::<E>(state, id.parse()?).await?.id();
    let visibility = state
        .directory
        .write(E::deleted(id), |store| async move {
            Ok(E::find(&*store, id).await?.is_none())
        })
        .await?;
    Ok((id, visibility))
}

/// The entry with `id`, or 404.
pub async fn existing<E: Entry>(state: &ApiState, id: E::Id) -> Result<E, ApiError> {
    E::find(state.store(), id)
        .await?
        .ok_or(ApiError::NotFound(E::NOUN))
}
