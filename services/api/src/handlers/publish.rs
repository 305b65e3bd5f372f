//! Server-side publish: `POST /api/profiles/{id}/publish` sends an event to
//! every live session on a profile, `POST /api/users/{id}/publish` to every
//! live session of one user, through the push topic. And
//! `GET /api/users/{id}/launched`: the profiles a user has open right now.

use rdkafka::producer::FutureRecord;
use rill_domain::{MessageId, Push, PushTarget};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{PageBody, json, parse_body, profiles, users};
use crate::directory::now_ms;
use crate::error::ApiError;
use crate::state::ApiState;

/// The longest event name.
const MAX_EVENT_NAME: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    event: String,
    data: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct Published {
    id: MessageId,
    /// How many live sessions the event was addressed to when it was sent.
    sessions: usize,
}

pub async fn to_profile(
    state: &ApiState,
    id: &str,
    ct: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let profile = profiles::existing(state, id.parse()?).await?.id;
    let request = parse_request(state, ct, body)?;
    let id = send(state, PushTarget::Profile(profile), request).await?;
    let sessions = state.live.live_users(profile).await?.len();
    Ok(json(StatusCode::ACCEPTED, &Published { id, sessions }))
}

pub async fn to_user(
    state: &ApiState,
    id: &str,
    ct: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let user = users::existing(state, id.parse()?).await?.id;
    let request = parse_request(state, ct, body)?;
    let id = send(state, PushTarget::User(user), request).await?;
    let sessions = state.live.launched(user).await?.len();
    Ok(json(StatusCode::ACCEPTED, &Published { id, sessions }))
}

pub async fn launched(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let user = users::existing(state, id.parse()?).await?.id;
    let profiles = state.live.launched(user).await?;
    Ok(json(
        StatusCode::OK,
        &PageBody::<_, MessageId> {
            items: profiles,
            next: None,
        },
    ))
}

fn parse_request(
    state: &ApiState,
    ct: Option<&str>,
    body: &[u8],
) -> Result<PublishRequest, ApiError> {
    let request: PublishRequest = parse_body(ct, body)?;
    let name_ok = !request.event.is_empty()
        && request.event.len() <= MAX_EVENT_NAME
        && request
            .event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !name_ok {
        return Err(ApiError::Invalid {
            field: "event",
            reason: format!("must be 1 to {MAX_EVENT_NAME} letters, digits, '.', '_' or '-'"),
        });
    }
    let size = request.data.to_string().len();
    let max = state.settings.limits.max_publish_bytes;
    if size > max {
        return Err(ApiError::OverLimit {
            field: "data",
            value: size,
            max,
        });
    }
    Ok(request)
}

/// Publishes the push; its record carries this span's trace context, which
/// each edge's delivery continues.
#[tracing::instrument(name = "publish push", skip_all, fields(push_id, profile_id, user_id, event = %request.event))]
async fn send(
    state: &ApiState,
    target: PushTarget,
    request: PublishRequest,
) -> Result<MessageId, ApiError> {
    let push = Push {
        id: MessageId::now(),
        target,
        event: request.event,
        data_json: request.data.to_string(),
        sent_at_ms: now_ms(),
    };
    let span = tracing::Span::current();
    span.record("push_id", tracing::field::display(push.id));
    match push.target {
        PushTarget::Profile(profile) => span.record("profile_id", tracing::field::display(profile)),
        PushTarget::User(user) => span.record("user_id", tracing::field::display(user)),
    };
    let key = push.key();
    let payload = push.encode();
    let record = FutureRecord::to(&state.settings.kafka.push_topic)
        .key(&key)
        .payload(&payload)
        .headers(rill_runtime::trace_context::current_headers());
    let timeout = state.settings.kafka.message_timeout_ms;
    state
        .producer
        .send(record, timeout)
        .await
        .map_err(|(err, _)| err)?;
    state.metrics.pushes_published.inc();
    tracing::info!(push_id = %push.id, key = %key, "published");
    Ok(push.id)
}
