//! Every route of the api, in one table. `tests/openapi.rs` checks that
//! `openapi.json` documents exactly these routes and that each one exists.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use warp::Filter;
use warp::reply::Response;

use crate::error::ApiError;
use crate::handlers::{history, profiles, publish, testdata, users};
use crate::query::Query;
use crate::state::ApiState;

/// (method, path) of every api route; `{x}` is a path parameter.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/openapi.json"),
    ("POST", "/api/users"),
    ("GET", "/api/users"),
    ("GET", "/api/users/suggested"),
    ("GET", "/api/users/{user_id}"),
    ("DELETE", "/api/users/{user_id}"),
    ("GET", "/api/users/{user_id}/profiles"),
    ("GET", "/api/users/{user_id}/launched"),
    ("POST", "/api/users/{user_id}/publish"),
    ("POST", "/api/profiles"),
    ("GET", "/api/profiles"),
    ("GET", "/api/profiles/{profile_id}"),
    ("DELETE", "/api/profiles/{profile_id}"),
    ("GET", "/api/profiles/{profile_id}/members"),
    ("PUT", "/api/profiles/{profile_id}/members/{user_id}"),
    ("DELETE", "/api/profiles/{profile_id}/members/{user_id}"),
    ("GET", "/api/profiles/{profile_id}/messages"),
    ("POST", "/api/profiles/{profile_id}/publish"),
    ("POST", "/api/testdata"),
    ("DELETE", "/api/testdata"),
];

/// The OpenAPI document of the routes above.
pub const OPENAPI: &str = include_str!("../openapi.json");

type Reply = Result<Response, ApiError>;

fn finish(result: Reply) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// The api's routes, the operations endpoints, and JSON errors for the rest.
pub fn all(
    state: Arc<ApiState>,
    registry: Arc<Registry>,
    ready: rill_runtime::ops::Readiness,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let max_body = state.settings.limits.max_body_bytes;
    let s = warp::any().map(move || state.clone());
    let body = rill_runtime::json_body::at_most(max_body);
    let query = warp::query::<HashMap<String, String>>().map(Query);

    let openapi = warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(|| {
            warp::reply::Reply::into_response(warp::reply::with_header(
                OPENAPI,
                "content-type",
                "application/json",
            ))
        });

    let create_user = warp::path!("api" / "users")
        .and(warp::post())
        .and(s.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, ct: Option<String>, b: Bytes| async move {
                finish(users::create(&st, ct.as_deref(), &b).await)
            },
        );
    let list_users = warp::path!("api" / "users")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|st: Arc<ApiState>, q| async move { finish(users::list(&st, q).await) });
    let suggested = warp::path!("api" / "users" / "suggested")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|st: Arc<ApiState>, q| async move { finish(users::suggested(&st, q).await) });
    let get_user = warp::path!("api" / "users" / String)
        .and(warp::get())
        .and(s.clone())
        .then(|id: String, st: Arc<ApiState>| async move { finish(users::get(&st, &id).await) });
    let delete_user = warp::path!("api" / "users" / String)
        .and(warp::delete())
        .and(s.clone())
        .then(|id: String, st: Arc<ApiState>| async move { finish(users::delete(&st, &id).await) });
    let user_profiles = warp::path!("api" / "users" / String / "profiles")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|id: String, st: Arc<ApiState>, q| async move {
            finish(users::profiles(&st, &id, q).await)
        });

    let create_profile = warp::path!("api" / "profiles")
        .and(warp::post())
        .and(s.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, ct: Option<String>, b: Bytes| async move {
                finish(profiles::create(&st, ct.as_deref(), &b).await)
            },
        );
    let list_profiles = warp::path!("api" / "profiles")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|st: Arc<ApiState>, q| async move { finish(profiles::list(&st, q).await) });
    let get_profile = warp::path!("api" / "profiles" / String)
        .and(warp::get())
        .and(s.clone())
        .then(|id: String, st: Arc<ApiState>| async move { finish(profiles::get(&st, &id).await) });
    let delete_profile = warp::path!("api" / "profiles" / String)
        .and(warp::delete())
        .and(s.clone())
        .then(
            |id: String, st: Arc<ApiState>| async move { finish(profiles::delete(&st, &id).await) },
        );
    let members = warp::path!("api" / "profiles" / String / "members")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|id: String, st: Arc<ApiState>, q| async move {
            finish(profiles::members(&st, &id, q).await)
        });
    let bind = warp::path!("api" / "profiles" / String / "members" / String)
        .and(warp::put())
        .and(s.clone())
        .then(|p: String, u: String, st: Arc<ApiState>| async move {
            finish(profiles::bind(&st, &p, &u).await)
        });
    let unbind = warp::path!("api" / "profiles" / String / "members" / String)
        .and(warp::delete())
        .and(s.clone())
        .then(|p: String, u: String, st: Arc<ApiState>| async move {
            finish(profiles::unbind(&st, &p, &u).await)
        });
    let messages = warp::path!("api" / "profiles" / String / "messages")
        .and(warp::get())
        .and(s.clone())
        .and(query)
        .then(|id: String, st: Arc<ApiState>, q| async move {
            finish(history::messages(&st, &id, q).await)
        });

    let launched =
        warp::path!("api" / "users" / String / "launched")
            .and(warp::get())
            .and(s.clone())
            .then(|id: String, st: Arc<ApiState>| async move {
                finish(publish::launched(&st, &id).await)
            });
    let publish_user = warp::path!("api" / "users" / String / "publish")
        .and(warp::post())
        .and(s.clone())
        .and(body)
        .then(
            |id: String, st: Arc<ApiState>, ct: Option<String>, b: Bytes| async move {
                finish(publish::to_user(&st, &id, ct.as_deref(), &b).await)
            },
        );
    let publish_profile = warp::path!("api" / "profiles" / String / "publish")
        .and(warp::post())
        .and(s.clone())
        .and(body)
        .then(
            |id: String, st: Arc<ApiState>, ct: Option<String>, b: Bytes| async move {
                finish(publish::to_profile(&st, &id, ct.as_deref(), &b).await)
            },
        );
    let create_testdata = warp::path!("api" / "testdata")
        .and(warp::post())
        .and(s.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, ct: Option<String>, b: Bytes| async move {
                finish(testdata::create(&st, ct.as_deref(), &b).await)
            },
        );
    let drop_testdata = warp::path!("api" / "testdata")
        .and(warp::delete())
        .and(s)
        .then(|st: Arc<ApiState>| async move { finish(testdata::drop_all(&st).await) });

    let ops = rill_runtime::ops::routes(registry, ready);

    ops.or(openapi)
        .unify()
        .boxed()
        .or(create_user)
        .unify()
        .boxed()
        .or(list_users)
        .unify()
        .boxed()
        .or(suggested)
        .unify()
        .boxed()
        .or(get_user)
        .unify()
        .boxed()
        .or(delete_user)
        .unify()
        .boxed()
        .or(user_profiles)
        .unify()
        .boxed()
        .or(create_profile)
        .unify()
        .boxed()
        .or(list_profiles)
        .unify()
        .boxed()
        .or(get_profile)
        .unify()
        .boxed()
        .or(delete_profile)
        .unify()
        .boxed()
        .or(members)
        .unify()
        .boxed()
        .or(bind)
        .unify()
        .boxed()
        .or(unbind)
        .unify()
        .boxed()
        .or(messages)
        .unify()
        .boxed()
        .or(create_testdata)
        .unify()
        .boxed()
        .or(drop_testdata)
        .unify()
        .boxed()
        .or(launched)
        .unify()
        .boxed()
        .or(publish_user)
        .unify()
        .boxed()
        .or(publish_profile)
        .unify()
        .boxed()
        .recover(rill_runtime::ops::recover)
        .unify()
}
