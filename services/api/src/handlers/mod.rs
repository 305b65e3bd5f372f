//! The api's request handlers, one file per resource. Each returns a
//! `Result<Response, ApiError>`; `routes` turns the error into its response.
//! `entry` holds what making, finding and deleting a user and a profile share.

pub mod accounts;
pub mod entry;
pub mod history;
pub mod profiles;
pub mod publish;
pub mod testdata;
pub mod users;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::directory::Visibility;
use crate::error::ApiError;

/// `body` as JSON with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::Reply::into_response(warp::reply::with_status(warp::reply::json(body), status))
}

/// `done` once the write is visible in the store, 202 Accepted before.
pub fn written(visibility: Visibility, done: StatusCode, body: &impl Serialize) -> Response {
    match visibility {
        Visibility::Visible => json(done, body),
        Visibility::Pending => json(StatusCode::ACCEPTED, body),
    }
}

/// 204 once the write is visible in the store, 202 Accepted before.
pub fn no_content(visibility: Visibility) -> Response {
    match visibility {
        Visibility::Visible => warp::reply::Reply::into_response(StatusCode::NO_CONTENT),
        Visibility::Pending => warp::reply::Reply::into_response(StatusCode::ACCEPTED),
    }
}

/// A page of the store, 200.
pub fn paged<T: Serialize, C: Serialize>(page: rill_store::Page<T, C>) -> Response {
    json(
        StatusCode::OK,
        &PageBody {
            items: page.items,
            next: page.next,
        },
    )
}

/// A page of items and the cursor of the next one.
#[derive(Debug, Serialize)]
pub struct PageBody<T: Serialize, C: Serialize> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// The body of a create request: a name.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    pub name: String,
}

pub fn parse_body<T: serde::de::DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, ApiError> {
    rill_runtime::json_body::parse(content_type, body).map_err(|err| match err {
        rill_runtime::json_body::JsonBodyError::NotJson => ApiError::NotJson,
        rill_runtime::json_body::JsonBodyError::BadJson(reason) => ApiError::BadJson(reason),
    })
}
