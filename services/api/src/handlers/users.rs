//! `/api/users`: create, list, read, delete, a user's profiles, suggested
//! users.

use rill_domain::{DirectoryChange, Name, User, UserId};
use rill_store::PageRequest;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{NameBody, PageBody, json, no_content, parse_body, written};
use crate::directory::now_ms;
use crate::error::ApiError;
use crate::query::Query;
use crate::state::ApiState;

pub async fn create(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request: NameBody = parse_body(content_type, body)?;
    let user = User {
        id: UserId::random(),
        name: Name::parse(&request.name)?,
        created_at_ms: now_ms(),
        test_data: false,
    };
    state
        .directory
        .publish(vec![DirectoryChange::UserUpserted(user.clone())])
        .await?;
    let id = user.id;
    let visibility = state
        .directory
        .wait_until(|store| async move { Ok(store.user(id).await?.is_some()) })
        .await?;
    tracing::info!(user_id = %id, "user created");
    Ok(written(visibility, StatusCode::CREATED, &user))
}

pub async fn list(state: &ApiState, query: Query) -> Result<Response, ApiError> {
    query.only(&["after", "limit"])?;
    let request = PageRequest {
        after: query.id("after")?,
        limit: query.limit(&state.settings.limits)?,
    };
    let page = state.store().users(request).await?;
    Ok(json(
        StatusCode::OK,
        &PageBody {
            items: page.items,
            next: page.next,
        },
    ))
}

pub async fn get(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let user = existing(state, id.parse()?).await?;
    Ok(json(StatusCode::OK, &user))
}

pub async fn delete(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let id = existing(state, id.parse()?).await?.id;
    state
        .directory
        .publish(vec![DirectoryChange::UserDeleted(id)])
        .await?;
    let visibility = state
        .directory
        .wait_until(|store| async move { Ok(store.user(id).await?.is_none()) })
        .await?;
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
    state
        .store()
        .user(id)
        .await?
        .ok_or(ApiError::NotFound("user"))
}
