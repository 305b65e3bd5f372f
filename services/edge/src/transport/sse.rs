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
use crate::events::{Outbound, ServerEvent};
use crate::hub::Next;
use crate::metrics::Transport;
use crate::transport::{LiveSession, authenticate, open_session};

pub fn routes(
    state: Arc<EdgeState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "sse")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::optional::<String>("cookie"))
        .then(
            |profile: String, state: Arc<EdgeState>, cookie: Option<String>| async move {
                let opened = match authenticate(&state, cookie.as_deref()) {
                    Ok(user) => open_session(&state, user, &profile, Transport::Sse).await,
                    Err(err) => Err(err),
                };
                opened
                    .map(|session| stream(&state, session))
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

/// Where a session's stream stands.
enum Step {
    Ready(Arc<Outbound>),
    Live,
    Ended,
}

fn stream(state: &EdgeState, session: LiveSession) -> Response {
    let ready = session.ready_event(&state.edge_id);
    let metrics = state.metrics.clone();
    let start = (session, Step::Ready(ready));
    let events = futures_util::stream::unfold(start, |(mut session, step)| async move {
        let next = match step {
            Step::Ready(ready) => ready,
            Step::Ended => return None,
            Step::Live => match session.subscription.next().await {
                Next::Event(event) => event,
                // The user was unbound: say so, then end the stream.
                Next::Evicted => return Some((not_a_member(), (session, Step::Ended))),
            },
        };
        Some((next, (session, Step::Live)))
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

fn not_a_member() -> Arc<Outbound> {
    let err = EdgeError::NotAMember;
    ServerEvent::Error {
        code: err.code(),
        message: &err.to_string(),
        reference: None,
    }
    .to_outbound()
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
