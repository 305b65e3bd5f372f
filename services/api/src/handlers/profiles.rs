//! `/api/profiles`: create, list, read, delete, members, bind, unbind.

use rill_domain::{DirectoryChange, Name, Profile, ProfileId, UserId};
use rill_store::PageRequest;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{NameBody, PageBody, json, no_content, parse_body, written};
use crate::directory::now_ms;
use crate::error::ApiError;
use crate::handlers::users;
use crate::query::Query;
use crate::state::ApiState;

pub async fn create(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request: NameBody = parse_body(content_type, body)?;
    let profile = Profile {
        id: ProfileId::random(),
        name: Name::parse(&request.name)?,
        created_at_ms: now_ms(),
        test_data: false,
    };
    state
        .directory
        .publish(vec![DirectoryChange::ProfileUpserted(profile.clone())])
        .await?;
    let id = profile.id;
    let visibility = state
        .directory
        .wait_until(|store| async move { Ok(store.profile(id).await?.is_some()) })
        .await?;
    tracing::info!(profile_id = %id, "profile created");
    Ok(written(visibility, StatusCode::CREATED, &profile))
}

pub async fn list(state: &ApiState, query: Query) -> Result<Response, ApiError> {
    query.only(&["after", "limit"])?;
    let request = PageRequest {
        after: query.id("after")?,
        limit: query.limit(&state.settings.limits)?,
    };
    let page = state.store().profiles(request).await?;
    Ok(json(
        StatusCode::OK,
        &PageBody {
            items: page.items,
            next: page.next,
        },
    ))
}

pub async fn get(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let profile = existing(state, id.parse()?).await?;
    Ok(json(StatusCode::OK, &profile))
}

pub async fn delete(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let id = existing(state, id.parse()?).await?.id;
    state
        .directory
        .publish(vec![DirectoryChange::ProfileDeleted(id)])
        .await?;
    let visibility = state
        .directory
        .wait_until(|store| async move { Ok(store.profile(id).await?.is_none()) })
        .await?;
    tracing::info!(profile_id = %id, "profile deleted");
    Ok(no_content(visibility))
}

pub async fn members(state: &ApiState, id: &str, query: Query) -> Result<Response, ApiError> {
    query.only(&["after", "limit"])?;
    let request = PageRequest {
        after: query.id("after")?,
        limit: query.limit(&state.settings.limits)?,
    };
    let id = existing(state, id.parse()?).await?.id;
    let page = state.store().members_of(id, request).await?;
    Ok(json(
        StatusCode::OK,
        &PageBody {
            items: page.items,
            next: page.next,
        },
    ))
}

pub async fn bind(state: &ApiState, profile: &str, user: &str) -> Result<Response, ApiError> {
    let (profile, user) = ids(profile, user)?;
    existing(state, profile).await?;
    users::existing(state, user).await?;
    state
        .directory
        .publish(vec![DirectoryChange::Bound { user, profile }])
        .await?;
    let visibility = state
        .directory
        .wait_until(|store| async move { store.is_member(user, profile).await })
        .await?;
    tracing::info!(user_id = %user, profile_id = %profile, "user bound");
    Ok(no_content(visibility))
}

pub async fn unbind(state: &ApiState, profile: &str, user: &str) -> Result<Response, ApiError> {
    let (profile, user) = ids(profile, user)?;
    if !state.store().is_member(user, profile).await? {
        return Err(ApiError::NotBound);
    }
    state
        .directory
        .publish(vec![DirectoryChange::Unbound { user, profile }])
        .await?;
    let visibility = state
        .directory
        .wait_until(|store| async move { Ok(!store.is_member(user, profile).await?) })
        .await?;
    tracing::info!(user_id = %user, profile_id = %profile, "user unbound");
    Ok(no_content(visibility))
}

fn ids(profile: &str, user: &str) -> Result<(ProfileId, UserId), ApiError> {
    Ok((profile.parse()?, user.parse()?))
}

/// The profile with `id`, or 404.
pub async fn existing(state: &ApiState, id: ProfileId) -> Result<Profile, ApiError> {
    state
        .store()
        .profile(id)
        .await?
        .ok_or(ApiError::NotFound("profile"))
}
