//! Accounts of the browser client: sign up, log in with a password, log
//! out (this login, or all of them), and who am I.
//!
//! The password is hashed (argon2id, `password` settings) on a blocking
//! thread and never stored, logged nor put on Kafka: the account (login
//! name, user, hash) goes straight to the store; the user itself goes
//! through the directory topic as every user does. A failed login answers
//! the same whatever was wrong, after the same work (an unknown name is
//! checked against a dummy hash), and counts against the account and the
//! client's address (`login` settings): past the limit, 429.

use std::sync::Arc;
use std::time::SystemTime;

use rill_auth::password::Password;
use rill_domain::{DirectoryChange, Name, Profile, ProfileId, User, UserId};
use rill_runtime::session_cookie::CookieSession;
use rill_store::{Account, login_key};
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{entry::Entry as _, json, parse_body};
use crate::access::Caller;
use crate::directory::now_ms;
use crate::error::ApiError;
use crate::state::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    name: String,
    password: Password,
}

/// `POST /api/signup`: a new user with an account, logged in; at most
/// `limits.signups_per_address` from one client address.
pub async fn sign_up(
    state: &Arc<ApiState>,
    address: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    if let Err(wait) = state.signups.try_take(&address.to_owned()) {
        tracing::info!(%address, wait_ms = wait.as_millis() as u64, "sign-ups from one address over their rate");
        return Err(ApiError::RateLimited {
            retry_after_secs: rill_runtime::rate_limit::retry_after_secs(wait),
        });
    }
    let request: Credentials = parse_body(content_type, body)?;
    let name = Name::parse(&request.name)?;
    request.password.check(&state.settings.password)?;
    let store = state.store();
    if store.account(&request.name).await?.is_some() {
        return Err(ApiError::NameTaken);
    }
    let passwords = state.passwords.clone();
    let password = request.password;
    let password_hash = tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|_| ApiError::Invalid {
            field: "password",
            reason: "could not be hashed".into(),
        })??;
    let user = User::named(name);
    let id = user.id;
    state
        .directory
        .write(user.clone().upserted(), |store| async move {
            Ok(store.user(id).await?.is_some())
        })
        .await?;
    let account = Account {
        login: request.name,
        user: id,
        password_hash,
        created_at_ms: now_ms(),
    };
    if !store.create_account(&account).await? {
        // Taken in the meantime: the user made for it goes again.
        state
            .directory
            .publish(vec![DirectoryChange::UserDeleted(id)])
            .await?;
        return Err(ApiError::NameTaken);
    }
    tracing::info!(user_id = %id, "account created");
    if let Some(lobby) = &state.settings.signup_lobby {
        join_lobby(state, id, lobby).await?;
    }
    logged_in(state, &user, StatusCode::CREATED).await
}

/// Binds a new account to the lobby (`signup_lobby`), making the lobby the
/// first time: its id comes from its name, so the upsert is the same on
/// every api and every sign-up.
async fn join_lobby(state: &ApiState, user: UserId, lobby: &str) -> Result<(), ApiError> {
    let id = ProfileId::from_uuid(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("rill-lobby/{lobby}").as_bytes(),
    ));
    let profile = Profile {
        id,
        name: Name::parse(lobby)?,
        created_at_ms: now_ms(),
        test_data: false,
    };
    // Both keyed by the profile: one partition, in this order.
    state
        .directory
        .publish(vec![
            DirectoryChange::ProfileUpserted(profile),
            DirectoryChange::Bound { user, profile: id },
        ])
        .await?;
    state
        .directory
        .wait_until(|store| async move { store.is_member(user, id).await })
        .await?;
    Ok(())
}

/// `POST /api/login`: checks the name and password; the session cookie.
pub async fn log_in(
    state: &Arc<ApiState>,
    address: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request: Credentials = parse_body(content_type, body)?;
    let limits = &state.settings.login;
    let account_key = format!("account:{}", login_key(&request.name));
    let address_key = format!("address:{address}");
    for (key, max) in [
        (&account_key, limits.max_failures_per_account),
        (&address_key, limits.max_failures_per_address),
    ] {
        let (failures, left) = state.logins.failures(key).await?;
        if failures >= max {
            return Err(ApiError::RateLimited {
                retry_after_secs: left.as_secs().max(1),
            });
        }
    }
    let account = state.store().account(&request.name).await?;
    let passwords = state.passwords.clone();
    let password = request.password;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verified = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => passwords.verify(&password, &hash),
        None => {
            passwords.verify_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let user = match (verified, account) {
        (true, Some(account)) => state.store().user(account.user).await?,
        _ => None,
    };
    let Some(user) = user else {
        let window = limits.failure_window_secs;
        state.logins.count_failure(&account_key, window).await?;
        state.logins.count_failure(&address_key, window).await?;
        tracing::info!("login failed");
        return Err(ApiError::BadCredentials);
    };
    state.logins.clear_failures(&account_key).await?;
    tracing::info!(user_id = %user.id, "logged in");
    logged_in(state, &user, StatusCode::OK).await
}

/// Starts a login of `user`: the user as JSON with the session cookie.
async fn logged_in(
    state: &ApiState,
    user: &User,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let login = state.logins.start(user.id).await?;
    let session = CookieSession {
        user: user.id,
        login,
    };
    let mut response = json(status, user);
    let cookie = state.cookies.issue(session, SystemTime::now());
    if let Ok(value) = warp::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// The signed-in user of `caller`; a server has none.
fn session_of(caller: Option<Caller>) -> Result<CookieSession, ApiError> {
    match caller {
        Some(Caller::User(session)) => Ok(session),
        _ => Err(ApiError::Forbidden(crate::access::Rule::SignedIn)),
    }
}

/// `POST /api/logout`: ends this login, and its live streams on every edge.
pub async fn log_out(state: &ApiState, caller: Option<Caller>) -> Result<Response, ApiError> {
    let session = session_of(caller)?;
    state.logins.end(session.user, session.login).await?;
    end_streams(state, session, Some(session.login)).await
}

/// `POST /api/logout/everywhere`: ends every login of the user.
pub async fn log_out_everywhere(
    state: &ApiState,
    caller: Option<Caller>,
) -> Result<Response, ApiError> {
    let session = session_of(caller)?;
    state.logins.end_all(session.user).await?;
    end_streams(state, session, None).await
}

async fn end_streams(
    state: &ApiState,
    session: CookieSession,
    login: Option<rill_domain::LoginId>,
) -> Result<Response, ApiError> {
    state
        .directory
        .publish(vec![DirectoryChange::LoginsEnded {
            user: session.user,
            login,
        }])
        .await?;
    tracing::info!(user_id = %session.user, everywhere = login.is_none(), "logged out");
    let mut response = warp::reply::Reply::into_response(StatusCode::NO_CONTENT);
    if let Ok(value) = warp::http::HeaderValue::from_str(&state.cookies.clear()) {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// `GET /api/me`: the signed-in user.
pub async fn me(state: &ApiState, caller: Option<Caller>) -> Result<Response, ApiError> {
    let session = session_of(caller)?;
    let user = state
        .store()
        .user(session.user)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(json(StatusCode::OK, &user))
}
