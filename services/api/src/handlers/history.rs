//! `/api/profiles/{id}/messages`: a profile's history, newest first.

use rill_domain::{ChatMessage, MessageId, ProfileId, UserId};
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::error::ApiError;
use crate::handlers::profiles;
use crate::query::Query;
use crate::state::ApiState;

/// A stored message as clients see it (the same fields as the edge's
/// `message` event).
#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    pub id: MessageId,
    pub profile_id: ProfileId,
    pub sender_id: UserId,
    pub body: &'a str,
    pub sent_at: i64,
}

#[derive(Debug, Serialize)]
struct HistoryPage<'a> {
    items: Vec<MessageView<'a>>,
    /// Pass as `before` for the next (older) page; absent at the end.
    next_before: Option<MessageId>,
}

pub async fn messages(state: &ApiState, id: &str, query: Query) -> Result<Response, ApiError> {
    query.only(&["before", "limit"])?;
    let limit = query.limit(&state.settings.limits)?;
    let before: Option<MessageId> = query.id("before")?;
    let profile = profiles::existing(state, id.parse()?).await?.id;
    let messages = state.store().history(profile, before, limit).await?;
    let next_before = if messages.len() == limit {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    let items = messages.iter().map(view).collect();
    Ok(json(StatusCode::OK, &HistoryPage { items, next_before }))
}

fn view(m: &ChatMessage) -> MessageView<'_> {
    MessageView {
        id: m.id,
        profile_id: m.profile_id,
        sender_id: m.sender_id,
        body: m.body.as_str(),
        sent_at: m.sent_at_ms,
    }
}
