//! `/api/users`: create, list, read, delete, a user's profiles, suggested
//! users.

use rill_domain::{User, UserId};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{PageBody, entry, json, no_content, paged, written};
use crate::error::ApiError;
use crate::query::Query;
use crate::state::ApiState;

pub async fn create(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (user, visibility) = entry::create::<User>(state, content_type, body).await?;
    tracing::info!(user_id = %user.id, "user created");
    Ok(written(visibility, StatusCode::CREATED, &user))
}

pub async fn list(state: &ApiState, query: Query) -> Result<Response, ApiError> {
    let request = query.page(&state.settings.limits)?;
    Ok(paged(state.store().users(request).await?))
}

pub async fn get(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let user = existing(state, id.parse()?).await?;
    Ok(json(StatusCode::OK, &user))
}

pub async fn delete(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let (id, visibility) = entry::delete::<User>(state, id).await?;
    tracing::info!(user_id = %id, "user deleted");
    Ok(no_content(visibility))
}

pub async fn profiles(state: &ApiState, id: &str, query: Query) -> Result<Response, ApiError> {
    query.only(&["limit"])?;
    let limit = query.limit(&state.settings.limits)?;
    let id = existing(state, id.parse()?).await?.id;
    let profiles = state.store().profiles_of(id, limit).await?;
    Ok(json(
        StatusCode::OK,
        &PageBody::<_, UserId> {
            items: profiles,
            next: None,
        },
    ))
}

pub async fn suggested(state: &ApiState, query: Query) -> Result<Response, ApiError> {
    query.only(&["limit"])?;
    let users = state
        .store()
        .suggested_users(query.limit(&state.settings.limits)?)
        .await?;
    Ok(json(
        StatusCode::OK,
        &PageBody::<_, UserId> {
            items: users,
            next: None,
        },
    ))
}

/// The user with `id`, or 404.
pub async fn existing(state: &ApiState, id: UserId) -> Result<User, ApiError> {
    entry::existing(state, id).await
}
