//! Plain HTTP: login, logout, and sending a message with a POST (the send
//! path of SSE clients).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use rill_domain::{ProfileId, UserId};
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::error::EdgeError;
use crate::events::{MAX_REF_LEN, SendRequest};
use crate::transport::Context;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user_id: String,
}

#[derive(Debug, Serialize)]
struct LoginReply {
    user_id: UserId,
}

#[derive(Debug, Serialize)]
struct SendReply<'a> {
    id: rill_domain::MessageId,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
}

/// `POST /login`, `POST /logout` and `POST /live/{profile}/messages`.
pub fn routes(
    context: Arc<Context>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let max_body = context.settings.max_frame_bytes as u64;
    let with_state = warp::any().map(move || context.clone());
    let json_body = rill_runtime::json_body::at_most(max_body);

    let login = warp::path!("login")
        .and(warp::post())
        .and(with_state.clone())
        .and(json_body)
        .then(
            |state: Arc<Context>, content_type: Option<String>, body: Bytes| async move {
                login(&state, content_type, &body)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        );
    let logout = warp::path!("logout")
        .and(warp::post())
        .and(with_state.clone())
        .map(|state: Arc<Context>| {
            let reply = warp::reply::with_header(
                StatusCode::NO_CONTENT,
                "set-cookie",
                state.cookies.clear(),
            );
            warp::reply::Reply::into_response(reply)
        });
    let send = warp::path!("live" / String / "messages")
        .and(warp::post())
        .and(with_state)
        .and(warp::header::optional::<String>("cookie"))
        .and(json_body)
        .then(
            |profile: String,
             state: Arc<Context>,
             cookie: Option<String>,
             content_type,
             body: Bytes| async move {
                send(&state, &profile, cookie.as_deref(), content_type, &body)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        );
    login.or(logout).unify().or(send).unify()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    content_type: Option<String>,
    body: &[u8],
) -> Result<T, EdgeError> {
    Ok(rill_runtime::json_body::parse(
        content_type.as_deref(),
        body,
    )?)
}

/// Logs in a user that exists. (Rill has no passwords yet: whoever knows a
/// user id can log in as that user; see docs/ARCHITECTURE.md.)
async fn login(
    state: &Context,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Response, EdgeError> {
    let request: LoginRequest = parse_json(content_type, body)?;
    let user: UserId = request.user_id.parse()?;
    if !state.sessions.membership.user_exists(user).await? {
        return Err(EdgeError::UnknownUser);
    }
    let set_cookie = state.cookies.issue(user, SystemTime::now());
    tracing::info!(user_id = %user, "logged in");
    let reply = warp::reply::with_header(
        warp::reply::json(&LoginReply { user_id: user }),
        "set-cookie",
        set_cookie,
    );
    Ok(warp::reply::Reply::into_response(reply))
}

async fn send(
    state: &Context,
    profile: &str,
    cookie: Option<&str>,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Response, EdgeError> {
    let user = state.authenticate(cookie)?;
    let profile: ProfileId = profile.parse()?;
    let request: SendRequest = parse_json(content_type, body)?;
    if request
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REF_LEN)
    {
        return Err(EdgeError::RefTooLong { max: MAX_REF_LEN });
    }
    let id = state.sessions.send(user, profile, request.body).await?;
    let reply = SendReply {
        id,
        reference: request.reference.as_deref(),
    };
    Ok(warp::reply::Reply::into_response(warp::reply::json(&reply)))
}
