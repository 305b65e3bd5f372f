//! `/api/profiles/{id}/messages`: a profile's history in its one order
//! (by position): newest first, or oldest first from a position on.
//!
//! `before` and `after` are positions (`{offset}-{check}`, as the `message`
//! event and each item carry); with both, the page holds what lies between
//! them, oldest first. Only the offset bounds the page: the check
//! names the message a client saw, which matters to a replay, not to where
//! a page of history starts.

use rill_domain::{MessageId, Position, ProfileId, Sequenced, UserId};
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
    pub position: Position,
    pub profile_id: ProfileId,
    pub sender_id: UserId,
    pub body: &'a str,
    pub sent_at: i64,
}

/// Newest first, without `after`.
#[derive(Debug, Serialize)]
struct OlderPage<'a> {
    items: Vec<MessageView<'a>>,
    /// Pass as `before` for the next (older) page; absent at the end.
    next_before: Option<Position>,
}

/// Oldest first, from `after` on.
#[derive(Debug, Serialize)]
struct NewerPage<'a> {
    items: Vec<MessageView<'a>>,
    /// Pass as `after` for the next (newer) page; absent when there was no
    /// more yet.
    next_after: Option<Position>,
}

pub async fn messages(state: &ApiState, id: &str, query: Query) -> Result<Response, ApiError> {
    query.only(&["before", "after", "limit"])?;
    let limit = query.limit(&state.settings.limits)?;
    let before = query.position("before")?;
    let after = query.position("after")?;
    let profile = profiles::existing(state, id.parse()?).await?.id;
    let store = state.store();
    match after {
        Some(after) => {
            let mut messages = store.history_after(profile, after.offset, limit).await?;
            // With `before` too: the messages between the two (a client
            // filling a hole it knows both ends of).
            if let Some(before) = before {
                messages.retain(|m| m.offset < before.offset);
            }
            let next_after = next(&messages, limit);
            let items = messages.iter().map(view).collect();
            Ok(json(StatusCode::OK, &NewerPage { items, next_after }))
        }
        None => {
            let before = before.map(|p| p.offset);
            let messages = store.history(profile, before, limit).await?;
            let next_before = next(&messages, limit);
            let items = messages.iter().map(view).collect();
            Ok(json(StatusCode::OK, &OlderPage { items, next_before }))
        }
    }
}

/// The cursor of the page after a full one: its last message's position.
fn next(messages: &[Sequenced], limit: usize) -> Option<Position> {
    if messages.len() == limit {
        messages.last().map(Sequenced::position)
    } else {
        None
    }
}

fn view(s: &Sequenced) -> MessageView<'_> {
    let m = &s.message;
    MessageView {
        id: m.id,
        position: s.position(),
        profile_id: m.profile_id,
        sender_id: m.sender_id,
        body: m.body.as_str(),
        sent_at: m.sent_at_ms,
    }
}
