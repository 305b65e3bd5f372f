//! Users and profiles for a run, through the api: `POST /api/testdata` in
//! chunks (the fastest path: one Kafka batch and one wait per chunk), then
//! each profile's members from `GET /api/profiles/{p}/members`, topped up
//! with `PUT /api/profiles/{p}/members/{u}` where the random bindings gave
//! a profile too few. Every request carries the api key (`X-Api-Key`), and
//! the test-data route needs an api with `test_data` on.

use std::collections::HashSet;
use std::time::Instant;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use reqwest::header::{HeaderMap, HeaderValue};
use rill_runtime::Secret;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the api key cannot be sent: a header value cannot hold it")]
    BadApiKey,
    #[error("{what}: {source}")]
    Http {
        what: String,
        source: reqwest::Error,
    },
    #[error("{what}: status {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

/// Profiles and, for each, the users that will hold a session on it.
#[derive(Debug, Clone)]
pub struct Population {
    pub profiles: Vec<(Uuid, Vec<Uuid>)>,
    pub seconds: f64,
    pub users_created: usize,
    pub bindings_added: usize,
}

#[derive(Debug, Deserialize)]
struct Created {
    users: Vec<Uuid>,
    profiles: Vec<Uuid>,
}

#[derive(Debug, Deserialize)]
struct MemberPage {
    #[serde(default)]
    items: Vec<Uuid>,
    #[serde(default)]
    next: Option<Uuid>,
}

/// Concurrent requests to the api while setting up.
const CONCURRENCY: usize = 16;

pub async fn populate(
    api: &str,
    api_key: &Secret,
    profiles: u32,
    users_per_profile: u32,
    max_users: u32,
    max_profiles: u32,
) -> Result<Population, SetupError> {
    let start = Instant::now();
    let http = client(api_key)?;
    let per_profile = users_per_profile as usize;
    // Each test user is bound to 1..=3 random profiles of its request (all
    // of them when there are fewer): with P profiles and U users wanted per
    // profile, P*U users give each about 2U members (U with one profile).
    let chunk_profiles = if per_profile as u64 * 2 > u64::from(max_users) {
        1
    } else {
        (max_users as usize / per_profile.max(1)).clamp(1, max_profiles as usize)
    };
    let mut chunks = Vec::new();
    let mut left = profiles as usize;
    while left > 0 {
        let p = left.min(chunk_profiles);
        let users = if p == 1 { per_profile } else { p * per_profile };
        chunks.push((users, p));
        left -= p;
    }
    let mut out = Vec::new();
    let mut users_created = 0;
    let mut bindings_added = 0;
    for (users, p) in chunks {
        // A single profile bigger than the api's limit: several requests
        // of users bound to their own throwaway profile, then bound here.
        let created = post_testdata(&http, api, users.min(max_users as usize), p).await?;
        users_created += created.users.len();
        let mut pool = created.users.clone();
        while p == 1 && pool.len() < users {
            let more =
                post_testdata(&http, api, (users - pool.len()).min(max_users as usize), 1).await?;
            users_created += more.users.len();
            pool.extend(more.users);
        }
        let members: Vec<Vec<Uuid>> = stream::iter(created.profiles.iter().copied())
            .map(|profile| members(&http, api, profile, per_profile))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        for (profile, mut have) in created.profiles.into_iter().zip(members) {
            if have.len() < per_profile {
                let present: HashSet<Uuid> = have.iter().copied().collect();
                let extra: Vec<Uuid> = pool
                    .iter()
                    .copied()
                    .filter(|u| !present.contains(u))
                    .take(per_profile - have.len())
                    .collect();
                stream::iter(extra.iter().copied())
                    .map(|user| bind(&http, api, profile, user))
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<()>()
                    .await?;
                bindings_added += extra.len();
                have.extend(extra);
            }
            have.truncate(per_profile);
            out.push((profile, have));
        }
    }
    Ok(Population {
        profiles: out,
        seconds: start.elapsed().as_secs_f64(),
        users_created,
        bindings_added,
    })
}

/// A client whose every request carries `api_key` as `X-Api-Key`.
fn client(api_key: &Secret) -> Result<reqwest::Client, SetupError> {
    let mut key = HeaderValue::from_str(api_key.expose()).map_err(|_| SetupError::BadApiKey)?;
    // Kept out of reqwest's Debug output of requests.
    key.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", key);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(http_error("the api client"))
}

async fn post_testdata(
    http: &reqwest::Client,
    api: &str,
    users: usize,
    profiles: usize,
) -> Result<Created, SetupError> {
    let what = format!("POST /api/testdata ({users} users, {profiles} profiles)");
    let response = http
        .post(format!("{api}/api/testdata"))
        .json(&serde_json::json!({ "users": users, "profiles": profiles }))
        .send()
        .await
        .map_err(http_error(&what))?;
    let response = check(response, &what).await?;
    response.json().await.map_err(http_error(&what))
}

async fn members(
    http: &reqwest::Client,
    api: &str,
    profile: Uuid,
    wanted: usize,
) -> Result<Vec<Uuid>, SetupError> {
    let what = format!("GET /api/profiles/{profile}/members");
    let mut out = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let mut url = format!("{api}/api/profiles/{profile}/members?limit=200");
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        let response = http.get(url).send().await.map_err(http_error(&what))?;
        let page: MemberPage = check(response, &what)
            .await?
            .json()
            .await
            .map_err(http_error(&what))?;
        out.extend(page.items);
        match page.next {
            Some(next) if out.len() < wanted => after = Some(next),
            _ => return Ok(out),
        }
    }
}

async fn bind(
    http: &reqwest::Client,
    api: &str,
    profile: Uuid,
    user: Uuid,
) -> Result<(), SetupError> {
    let what = format!("PUT /api/profiles/{profile}/members/{user}");
    let response = http
        .put(format!("{api}/api/profiles/{profile}/members/{user}"))
        .send()
        .await
        .map_err(http_error(&what))?;
    check(response, &what).await.map(drop)
}

async fn check(response: reqwest::Response, what: &str) -> Result<reqwest::Response, SetupError> {
    let status = response.status().as_u16();
    // 202: written but not yet visible; the edge's membership check reads
    // the store, so a session may then be refused (counted as an error).
    if (200..300).contains(&status) {
        return Ok(response);
    }
    Err(SetupError::Status {
        what: what.to_owned(),
        status,
        body: response.text().await.unwrap_or_default(),
    })
}

/// Made-up ids, for the Socket.IO peer (which has no directory).
pub fn made_up(profiles: u32, users_per_profile: u32) -> Population {
    Population {
        profiles: (0..profiles)
            .map(|_| {
                let users = (0..users_per_profile).map(|_| Uuid::new_v4()).collect();
                (Uuid::new_v4(), users)
            })
            .collect(),
        seconds: 0.0,
        users_created: 0,
        bindings_added: 0,
    }
}

/// Wraps a request's failure with what was being done.
fn http_error(what: &str) -> impl FnOnce(reqwest::Error) -> SetupError + '_ {
    move |source| SetupError::Http {
        what: what.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use warp::Filter as _;

    use super::*;

    /// A stand-in api on port 0: test data of `users` users bound to one
    /// profile, and each request's path and `X-Api-Key` recorded.
    async fn fake_api(users: usize) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let profile = Uuid::new_v4();
        let members: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
        let routes = warp::path::full()
            .and(warp::header::optional::<String>("x-api-key"))
            .map(move |path: warp::path::FullPath, key: Option<String>| {
                log.lock()
                    .expect("log")
                    .push((path.as_str().to_owned(), key));
                let reply = match path.as_str() {
                    "/api/testdata" => {
                        serde_json::json!({ "users": members, "profiles": [profile] })
                    }
                    _ => serde_json::json!({ "items": members }),
                };
                warp::reply::json(&reply)
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        (url, seen)
    }

    #[tokio::test]
    async fn every_api_request_carries_the_api_key() {
        let (api, seen) = fake_api(3).await;
        let population = populate(&api, &Secret::new("rk_load"), 1, 3, 100, 10)
            .await
            .expect("populated");
        assert_eq!(population.profiles.len(), 1);
        assert_eq!(population.profiles[0].1.len(), 3);
        let seen = seen.lock().expect("log").clone();
        let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths[0], "/api/testdata");
        assert!(paths[1].ends_with("/members"), "{paths:?}");
        assert!(
            seen.iter()
                .all(|(_, key)| key.as_deref() == Some("rk_load")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_key_no_header_can_hold_is_refused_before_any_request() {
        let (api, seen) = fake_api(1).await;
        let err = populate(&api, &Secret::new("rk\nload"), 1, 1, 100, 10)
            .await
            .expect_err("refused");
        assert!(matches!(err, SetupError::BadApiKey), "{err}");
        assert!(seen.lock().expect("log").is_empty());
    }
}
