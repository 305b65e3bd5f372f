//! Plain HTTP: a connection token exchanged for the session cookie, and
//! sending a message with a POST (the send path of SSE clients). Accounts
//! (sign-up, login with a password, logout) are the api's.

use std::sync::Arc;

use bytes::Bytes;
use rill_domain::{ProfileId, UserId};
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::http::HeaderMap;
use warp::reply::Response;

use crate::error::EdgeError;
use crate::events::{MAX_REF_LEN, SendRequest, valid_idempotency_key};
use crate::transport::{Context, credentials};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLoginRequest {
    token: String,
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

/// `POST /login/token` and `POST /live/{profile}/messages`.
pub fn routes(
    context: Arc<Context>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let max_body = context.settings.max_frame_bytes as u64;
    let with_state = warp::any().map(move || context.clone());
    let json_body = rill_runtime::json_body::at_most(max_body);

    let token_login = warp::path!("login" / "token")
        .and(warp::post())
        .and(with_state.clone())
        .and(json_body)
        .then(
            |state: Arc<Context>, content_type: Option<String>, body: Bytes| async move {
                token_login(&state, content_type, &body)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        );
    let send = warp::path!("live" / String / "messages")
        .and(warp::post())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .and(json_body)
        .then(
            |profile: String,
             state: Arc<Context>,
             headers: HeaderMap,
             content_type,
             body: Bytes| async move {
                send(&state, &profile, &headers, content_type, &body)
                    .await
                    .unwrap_or_else(EdgeError::into_response)
            },
        );
    token_login.or(send).unify()
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

/// The body of a send, checked: JSON, a `ref` of at most [`MAX_REF_LEN`]
/// characters, a valid idempotency key.
pub(crate) fn parse_send(
    content_type: Option<String>,
    body: &[u8],
) -> Result<SendRequest, EdgeError> {
    let request: SendRequest = parse_json(content_type, body)?;
    if request
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REF_LEN)
    {
        return Err(EdgeError::RefTooLong { max: MAX_REF_LEN });
    }
    if request
        .idempotency_key
        .as_deref()
        .is_some_and(|key| !valid_idempotency_key(key))
    {
        return Err(EdgeError::BadIdempotencyKey);
    }
    Ok(request)
}

/// A connection token for the session cookie: a page that got a token from
/// its application's backend logs in with it once, and its streams then
/// carry the cookie.
async fn token_login(
    state: &Context,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Response, EdgeError> {
    let request: TokenLoginRequest = parse_json(content_type, body)?;
    let (user, set_cookie) = state.auth.exchange(&request.token).await?;
    tracing::info!(user_id = %user, "logged in with a connection token");
    let reply = warp::reply::with_header(
        warp::reply::json(&LoginReply { user_id: user }),
        "set-cookie",
        set_cookie,
    );
    Ok(warp::reply::Reply::into_response(reply))
}

/// A send from the caller. With the session cookie, only from a page of
/// this site (`Origin`): a cross-site form or script cannot send as the
/// user. A connection token is not sent by the browser on its own, so it
/// needs no such check.
async fn send(
    state: &Context,
    profile: &str,
    headers: &HeaderMap,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Response, EdgeError> {
    let credentials = credentials(headers, "");
    let identity = state.identify(credentials).await?;
    if identity.login.is_some() {
        super::same_site(headers, &state.settings.allowed_origins, true)?;
    }
    let profile: ProfileId = profile.parse()?;
    if !identity.may_use(profile) {
        return Err(EdgeError::ProfileNotAllowed);
    }
    let user = identity.user;
    state.post_sends.try_take(&user).map_err(|wait| {
        state.metrics.refused("rate_limited");
        EdgeError::RateLimited(wait)
    })?;
    let request = parse_send(content_type, body)?;
    let key = request.idempotency_key.as_deref();
    let id = state
        .sessions
        .send(user, profile, request.body, key)
        .await?;
    let reply = SendReply {
        id,
        reference: request.reference.as_deref(),
    };
    Ok(warp::reply::Reply::into_response(warp::reply::json(&reply)))
}
