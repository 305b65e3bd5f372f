//! Server-Sent Events: `GET /live/{profile}/sse`. The stream opens with a
//! `ready` event; each message event carries its id as the SSE `id:`, so a
//! browser's EventSource sends it back as `Last-Event-ID` when it reconnects.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use warp::Filter;
use warp::reply::Response;

use crate::app::EdgeState;
use crate::error::EdgeError;
use crate::events::Outbound;
use crate::metrics::Transport;
use crate::transport::{LiveSession, authenticate, open_session};

pub fn routes(
    state: Arc<EdgeState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "sse")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::optional::<String>("cookie"))
        .map(
            |profile: String, state: Arc<EdgeState>, cookie: Option<String>| {
                authenticate(&state, cookie.as_deref())
                    .and_then(|user| open_session(&state, user, &profile, Transport::Sse))
                    .map(|session| stream(&state, session))
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

fn stream(state: &EdgeState, session: LiveSession) -> Response {
    let ready = session.ready_event(&state.edge_id);
    let metrics = state.metrics.clone();
    let events =
        futures_util::stream::unfold((session, Some(ready)), |(mut session, first)| async move {
            let next = match first {
                Some(ready) => ready,
                None => session.subscription.next().await?,
            };
            Some((next, (session, None)))
        })
        .map(move |out| {
            metrics.delivered_events.inc();
            Ok::<_, Infallible>(to_sse(&out))
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    let keepalive = Duration::from_secs(state.settings.limits.sse_keepalive_secs);
    let stream = warp::sse::keep_alive().interval(keepalive).stream(events);
    warp::reply::Reply::into_response(warp::sse::reply(stream))
}

fn to_sse(out: &Outbound) -> warp::sse::Event {
    let event = warp::sse::Event::default()
        .event(out.name)
        .data(out.json.as_str());
    match &out.id {
        Some(id) => event.id(id.as_str()),
        None => event,
    }
}
