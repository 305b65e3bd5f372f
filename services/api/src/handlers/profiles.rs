//! `/api/profiles`: create, list, read, delete, members, bind, unbind.

use rill_domain::{DirectoryChange, Profile, ProfileId, UserId};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{entry, json, no_content, paged, written};
use crate::error::ApiError;
use crate::handlers::users;
use crate::query::Query;
use crate::state::ApiState;

pub async fn create(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (profile, visibility) = entry::create::<Profile>(state, content_type, body).await?;
    tracing::info!(profile_id = %profile.id, "profile created");
    Ok(written(visibility, StatusCode::CREATED, &profile))
}

pub async fn list(state: &ApiState, query: Query) -> Result<Response, ApiError> {
    let request = query.page(&state.settings.limits)?;
    Ok(paged(state.store().profiles(request).await?))
}

pub async fn get(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let profile = existing(state, id.parse()?).await?;
    Ok(json(StatusCode::OK, &profile))
}

pub async fn delete(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let (id, visibility) = entry::delete::<Profile>(state, id).await?;
    tracing::info!(profile_id = %id, "profile deleted");
    Ok(no_content(visibility))
}

pub async fn members(state: &ApiState, id: &str, query: Query) -> Result<Response, ApiError> {
    let request = query.page(&state.settings.limits)?;
    let id = existing(state, id.parse()?).await?.id;
    Ok(paged(state.store().members_of(id, request).await?))
}

pub async fn bind(state: &ApiState, profile: &str, user: &str) -> Result<Response, ApiError> {
    let (profile, user) = ids(profile, user)?;
    existing(state, profile).await?;
    users::existing(state, user).await?;
    let visibility = state
        .directory
        .write(
            DirectoryChange::Bound { user, profile },
            |store| async move { store.is_member(user, profile).await },
        )
        .await?;
    tracing::info!(user_id = %user, profile_id = %profile, "user bound");
    Ok(no_content(visibility))
}

pub async fn unbind(state: &ApiState, profile: &str, user: &str) -> Result<Response, ApiError> {
    let (profile, user) = ids(profile, user)?;
    if !state.store().is_member(user, profile).await? {
        return Err(ApiError::NotBound);
    }
    let visibility = state
        .directory
        .write(
            DirectoryChange::Unbound { user, profile },
            |store| async move { Ok(!store.is_member(user, profile).await?) },
        )
        .await?;
    tracing::info!(user_id = %user, profile_id = %profile, "user unbound");
    Ok(no_content(visibility))
}

fn ids(profile: &str, user: &str) -> Result<(ProfileId, UserId), ApiError> {
    Ok((profile.parse()?, user.parse()?))
}

/// The profile with `id`, or 404.
pub async fn existing(state: &ApiState, id: ProfileId) -> Result<Profile, ApiError> {
    entry::existing(state, id).await
}
