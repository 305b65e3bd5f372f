//! The transport of the operations page: its files (`ops/` beside this
//! crate, compiled in, no build step) and its event stream.
//!
//! The page is public, as it holds no data; the stream needs a server API
//! key in `X-Api-Key`, which the page asks for and sends with `fetch`
//! (EventSource cannot send a header). A user's cookie is refused (403).

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::stream::{self, Stream};
use rill_runtime::shutdown::CancellationToken;
use tokio::sync::watch;
use warp::http::HeaderValue;
use warp::reply::Response;

use super::{Collector, Latest};

/// One file of the page: its content type and its bytes.
#[derive(Debug)]
pub struct PageFile {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const INDEX: PageFile = PageFile {
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../../ops/index.html"),
};
pub const SCRIPT: PageFile = PageFile {
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../ops/ops.js"),
};
pub const STYLE: PageFile = PageFile {
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../../ops/ops.css"),
};

/// Scripts, styles and data from the api's own origin only; no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// The response of `file`.
pub fn serve(file: &'static PageFile) -> Response {
    let mut response = Response::new(file.bytes.into());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(file.content_type));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// The event stream of `collector`: a `snapshot` event with the newest
/// one at once (if there is one), then one per new snapshot, until the api
/// shuts down (a stream left open would hold the graceful shutdown).
pub fn stream(collector: &Collector) -> Response {
    let events = snapshots(collector.subscribe(), collector.shutdown.clone());
    let events = warp::sse::keep_alive().stream(events);
    let mut response = warp::reply::Reply::into_response(warp::sse::reply(events));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn snapshots(
    mut latest: watch::Receiver<Latest>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    latest.mark_changed();
    stream::unfold(latest, move |mut latest| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    changed = latest.changed() => changed.ok()?,
                }
                let json: Option<Arc<str>> = latest.borrow_and_update().clone();
                if let Some(json) = json {
                    let event = warp::sse::Event::default().event("snapshot").data(&*json);
                    return Some((Ok(event), latest));
                }
            }
        }
    })
}
