//! Every route of the api, in one table. `tests/openapi.rs` checks that
//! `openapi.json` documents exactly these routes and that each one exists.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use warp::Filter;
use warp::http::Method;
use warp::path::FullPath;
use warp::reply::Response;

use crate::access::{self, Credentials, Rule};
use crate::error::ApiError;
use crate::handlers::{accounts, history, profiles, publish, testdata, users};
use crate::ops::page;
use crate::query::Query;
use crate::state::ApiState;

/// (method, path, who may call it) of every api route; `{x}` is a path
/// parameter. The rule is checked before the handler runs (`access`).
pub const ROUTES: &[(&str, &str, Rule)] = &[
    ("GET", "/api/openapi.json", Rule::Anyone),
    ("POST", "/api/signup", Rule::Anyone),
    ("POST", "/api/login", Rule::Anyone),
    ("POST", "/api/logout", Rule::SignedIn),
    ("POST", "/api/logout/everywhere", Rule::SignedIn),
    ("GET", "/api/me", Rule::SignedIn),
    ("POST", "/api/users", Rule::Server),
    ("GET", "/api/users", Rule::Server),
    ("GET", "/api/users/suggested", Rule::SignedIn),
    ("GET", "/api/users/{user_id}", Rule::SignedIn),
    ("DELETE", "/api/users/{user_id}", Rule::Server),
    ("GET", "/api/users/{user_id}/profiles", Rule::Oneself),
    ("GET", "/api/users/{user_id}/launched", Rule::Oneself),
    ("POST", "/api/users/{user_id}/publish", Rule::Server),
    ("POST", "/api/profiles", Rule::Server),
    ("GET", "/api/profiles", Rule::Server),
    ("GET", "/api/profiles/{profile_id}", Rule::Member),
    ("DELETE", "/api/profiles/{profile_id}", Rule::Server),
    ("GET", "/api/profiles/{profile_id}/members", Rule::Member),
    (
        "PUT",
        "/api/profiles/{profile_id}/members/{user_id}",
        Rule::Server,
    ),
    (
        "DELETE",
        "/api/profiles/{profile_id}/members/{user_id}",
        Rule::Server,
    ),
    ("GET", "/api/profiles/{profile_id}/messages", Rule::Member),
    ("POST", "/api/profiles/{profile_id}/publish", Rule::Server),
    ("POST", "/api/testdata", Rule::Server),
    ("DELETE", "/api/testdata", Rule::Server),
    // The operations page holds no data; its stream needs a server key.
    ("GET", "/api/ops", Rule::Anyone),
    ("GET", "/api/ops/ops.js", Rule::Anyone),
    ("GET", "/api/ops/ops.css", Rule::Anyone),
    ("GET", "/api/ops/stream", Rule::Server),
];

/// The paths of the operations endpoints (`rill_runtime::ops`), all `GET`,
/// served beside the routes above but not documented with them.
const OPS_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The methods of the route a request's `path` names, in table order, each
/// once; none for a path the router does not know. A `{x}` of the table
/// matches any one segment that is not empty, and one trailing `/` is
/// allowed, as warp's `path!` does. Where a path fits both a fixed segment
/// and a parameter (`/api/users/suggested`, `/api/users/{user_id}`), the
/// fixed one names it: the document lists only `GET` there.
pub fn methods_of(path: &str) -> Vec<&'static str> {
    fn segments(path: &str) -> Vec<&str> {
        let path = path.strip_prefix('/').unwrap_or(path);
        path.strip_suffix('/').unwrap_or(path).split('/').collect()
    }
    let asked = segments(path);
    let fits = |template: &str| {
        let template = segments(template);
        template.len() == asked.len()
            && template
                .iter()
                .zip(&asked)
                .all(|(t, a)| !a.is_empty() && (t.starts_with('{') || t == a))
    };
    // Which segments are parameters: the smallest (a fixed segment first)
    // is the most specific template.
    let parameters = |template: &str| -> Vec<bool> {
        segments(template)
            .iter()
            .map(|s| s.starts_with('{'))
            .collect()
    };
    let routes = ROUTES
        .iter()
        .map(|(method, template, _)| (*method, *template));
    let ops = OPS_PATHS.iter().map(|template| ("GET", *template));
    let fitting: Vec<(&'static str, &'static str)> =
        routes.chain(ops).filter(|(_, t)| fits(t)).collect();
    let Some(named) = fitting
        .iter()
        .map(|(_, t)| *t)
        .min_by_key(|t| parameters(t))
    else {
        return Vec::new();
    };
    let mut methods = Vec::new();
    for (method, _) in fitting.iter().filter(|(_, t)| *t == named) {
        if !methods.contains(method) {
            methods.push(*method);
        }
    }
    methods
}

/// A known path asked with a method it does not have: 405 with `Allow`.
/// Checked before the routes, so that a method only a less specific route
/// has (`DELETE /api/users/suggested`) is a 405 as documented, not that
/// route's 400. Anything else is left to the routes.
fn method_not_allowed() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and_then(|method: Method, path: FullPath| async move {
            let allowed = methods_of(path.as_str());
            if allowed.is_empty() || allowed.contains(&method.as_str()) {
                return Err(warp::reject::not_found());
            }
            Ok(ApiError::MethodNotAllowed { allowed }.into_response())
        })
}

/// The OpenAPI document of the routes above.
pub const OPENAPI: &str = include_str!("../openapi.json");

type Reply = Result<Response, ApiError>;

fn finish(result: Reply) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Runs `handler` once the caller of `credentials` may call a route with
/// `rule` (`id`: the route's first path parameter); else answers why not.
async fn guarded(
    state: &ApiState,
    credentials: &Credentials,
    rule: Rule,
    id: Option<&str>,
    handler: impl Future<Output = Reply>,
) -> Response {
    finish(match access::check(state, credentials, rule, id).await {
        Ok(_) => handler.await,
        Err(err) => Err(err),
    })
}

/// The test-data routes answer only where `test_data` is on.
fn test_data_on(state: &ApiState) -> Result<(), ApiError> {
    match state.settings.test_data {
        true => Ok(()),
        false => Err(ApiError::TestDataOff),
    }
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

    let c = access::credentials();
    // The client's address for the login and sign-up limits: the last hop of
    // X-Forwarded-For (added by Traefik), else the peer.
    let address = warp::header::optional::<String>("x-forwarded-for")
        .and(crate::server::peer())
        .map(
            |forwarded: Option<String>, peer: Option<std::net::SocketAddr>| {
                forwarded
                    .as_deref()
                    .and_then(|hops| hops.rsplit(',').next())
                    .map(|hop| hop.trim().to_owned())
                    .or_else(|| peer.map(|peer| peer.ip().to_string()))
                    .unwrap_or_default()
            },
        );

    let sign_up = warp::path!("api" / "signup")
        .and(warp::post())
        .and(s.clone())
        .and(address.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, address: String, ct: Option<String>, b: Bytes| async move {
                finish(accounts::sign_up(&st, &address, ct.as_deref(), &b).await)
            },
        );
    let log_in = warp::path!("api" / "login")
        .and(warp::post())
        .and(s.clone())
        .and(address)
        .and(body)
        .then(
            |st: Arc<ApiState>, address: String, ct: Option<String>, b: Bytes| async move {
                finish(accounts::log_in(&st, &address, ct.as_deref(), &b).await)
            },
        );
    let log_out = warp::path!("api" / "logout")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .then(|st: Arc<ApiState>, cr: Credentials| async move {
            finish(
                async {
                    let caller = access::check(&st, &cr, Rule::SignedIn, None).await?;
                    accounts::log_out(&st, caller).await
                }
                .await,
            )
        });
    let log_out_everywhere = warp::path!("api" / "logout" / "everywhere")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .then(|st: Arc<ApiState>, cr: Credentials| async move {
            finish(
                async {
                    let caller = access::check(&st, &cr, Rule::SignedIn, None).await?;
                    accounts::log_out_everywhere(&st, caller).await
                }
                .await,
            )
        });
    let me = warp::path!("api" / "me")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .then(|st: Arc<ApiState>, cr: Credentials| async move {
            finish(
                async {
                    let caller = access::check(&st, &cr, Rule::SignedIn, None).await?;
                    accounts::me(&st, caller).await
                }
                .await,
            )
        });

    let create_user = warp::path!("api" / "users")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, cr: Credentials, ct: Option<String>, b: Bytes| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Server,
                    None,
                    users::create(&st, ct.as_deref(), &b),
                )
                .await
            },
        );
    let list_users = warp::path!("api" / "users")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(|st: Arc<ApiState>, cr: Credentials, q| async move {
            guarded(&st, &cr, Rule::Server, None, users::list(&st, q)).await
        });
    let suggested = warp::path!("api" / "users" / "suggested")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(|st: Arc<ApiState>, cr: Credentials, q| async move {
            guarded(&st, &cr, Rule::SignedIn, None, users::suggested(&st, q)).await
        });
    let get_user = warp::path!("api" / "users" / String)
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(&st, &cr, Rule::SignedIn, Some(&id), users::get(&st, &id)).await
            },
        );
    let delete_user = warp::path!("api" / "users" / String)
        .and(warp::delete())
        .and(s.clone())
        .and(c.clone())
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(&st, &cr, Rule::Server, Some(&id), users::delete(&st, &id)).await
            },
        );
    let user_profiles = warp::path!("api" / "users" / String / "profiles")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials, q| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Oneself,
                    Some(&id),
                    users::profiles(&st, &id, q),
                )
                .await
            },
        );

    let create_profile = warp::path!("api" / "profiles")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, cr: Credentials, ct: Option<String>, b: Bytes| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Server,
                    None,
                    profiles::create(&st, ct.as_deref(), &b),
                )
                .await
            },
        );
    let list_profiles = warp::path!("api" / "profiles")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(|st: Arc<ApiState>, cr: Credentials, q| async move {
            guarded(&st, &cr, Rule::Server, None, profiles::list(&st, q)).await
        });
    let get_profile = warp::path!("api" / "profiles" / String)
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(&st, &cr, Rule::Member, Some(&id), profiles::get(&st, &id)).await
            },
        );
    let delete_profile = warp::path!("api" / "profiles" / String)
        .and(warp::delete())
        .and(s.clone())
        .and(c.clone())
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Server,
                    Some(&id),
                    profiles::delete(&st, &id),
                )
                .await
            },
        );
    let members = warp::path!("api" / "profiles" / String / "members")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials, q| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Member,
                    Some(&id),
                    profiles::members(&st, &id, q),
                )
                .await
            },
        );
    let bind = warp::path!("api" / "profiles" / String / "members" / String)
        .and(warp::put())
        .and(s.clone())
        .and(c.clone())
        .then(
            |p: String, u: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Server,
                    Some(&p),
                    profiles::bind(&st, &p, &u),
                )
                .await
            },
        );
    let unbind = warp::path!("api" / "profiles" / String / "members" / String)
        .and(warp::delete())
        .and(s.clone())
        .and(c.clone())
        .then(
            |p: String, u: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Server,
                    Some(&p),
                    profiles::unbind(&st, &p, &u),
                )
                .await
            },
        );
    let messages = warp::path!("api" / "profiles" / String / "messages")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .and(query)
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials, q| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Member,
                    Some(&id),
                    history::messages(&st, &id, q),
                )
                .await
            },
        );

    let launched = warp::path!("api" / "users" / String / "launched")
        .and(warp::get())
        .and(s.clone())
        .and(c.clone())
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials| async move {
                guarded(
                    &st,
                    &cr,
                    Rule::Oneself,
                    Some(&id),
                    publish::launched(&st, &id),
                )
                .await
            },
        );
    let publish_user = warp::path!("api" / "users" / String / "publish")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .and(body)
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials, ct: Option<String>, b: Bytes| async move {
                guarded(&st, &cr, Rule::Server, Some(&id), publish::to_user(&st, &id, ct.as_deref(), &b)).await
            },
        );
    let publish_profile = warp::path!("api" / "profiles" / String / "publish")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .and(body)
        .then(
            |id: String, st: Arc<ApiState>, cr: Credentials, ct: Option<String>, b: Bytes| async move {
                guarded(&st, &cr, Rule::Server, Some(&id), publish::to_profile(&st, &id, ct.as_deref(), &b)).await
            },
        );
    let create_testdata = warp::path!("api" / "testdata")
        .and(warp::post())
        .and(s.clone())
        .and(c.clone())
        .and(body)
        .then(
            |st: Arc<ApiState>, cr: Credentials, ct: Option<String>, b: Bytes| async move {
                guarded(&st, &cr, Rule::Server, None, async {
                    test_data_on(&st)?;
                    testdata::create(&st, ct.as_deref(), &b).await
                })
                .await
            },
        );
    let drop_testdata = warp::path!("api" / "testdata")
        .and(warp::delete())
        .and(s.clone())
        .and(c.clone())
        .then(|st: Arc<ApiState>, cr: Credentials| async move {
            guarded(&st, &cr, Rule::Server, None, async {
                test_data_on(&st)?;
                testdata::drop_all(&st).await
            })
            .await
        });

    let ops_page = warp::path!("api" / "ops")
        .map(|| &page::INDEX)
        .or(warp::path!("api" / "ops" / "ops.js").map(|| &page::SCRIPT))
        .unify()
        .or(warp::path!("api" / "ops" / "ops.css").map(|| &page::STYLE))
        .unify()
        .and(warp::get())
        .map(page::serve);
    let ops_stream = warp::path!("api" / "ops" / "stream")
        .and(warp::get())
        .and(s)
        .and(c)
        .then(|st: Arc<ApiState>, cr: Credentials| async move {
            guarded(&st, &cr, Rule::Server, None, async {
                Ok(page::stream(&st.ops))
            })
            .await
        });

    let ops = rill_runtime::ops::routes(registry, ready);

    method_not_allowed()
        .or(ops)
        .unify()
        .boxed()
        .or(openapi)
        .unify()
        .boxed()
        .or(sign_up)
        .unify()
        .boxed()
        .or(log_in)
        .unify()
        .boxed()
        .or(log_out_everywhere)
        .unify()
        .boxed()
        .or(log_out)
        .unify()
        .boxed()
        .or(me)
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
        .or(ops_page)
        .unify()
        .boxed()
        .or(ops_stream)
        .unify()
        .boxed()
        .recover(rill_runtime::ops::recover)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_methods_of_a_path_come_from_the_route_table() {
        let id = "0190f4c8-6a3e-7cc0-8a4c-7b1e0f3b2a11";
        assert_eq!(methods_of("/api/users"), ["POST", "GET"]);
        assert_eq!(methods_of(&format!("/api/users/{id}")), ["GET", "DELETE"]);
        // A fixed segment and a parameter both fit: the fixed one names it.
        assert_eq!(methods_of("/api/users/suggested"), ["GET"]);
        assert_eq!(
            methods_of(&format!("/api/profiles/{id}/members/{id}/")),
            ["PUT", "DELETE"]
        );
        assert_eq!(methods_of("/api/testdata"), ["POST", "DELETE"]);
        assert_eq!(methods_of("/metrics"), ["GET"]);
        for unknown in ["/", "/api", "/api/nope", "/api//users", "/api/users/a/b/c"] {
            assert!(methods_of(unknown).is_empty(), "{unknown}");
        }
    }
}
