//! Server-Sent Events: `GET /live/{profile}/sse`. The stream opens with
//! `ready` and `presence`; each message event carries its id as the SSE
//! `id:`, so a browser's EventSource sends it back as `Last-Event-ID` when
//! it reconnects, and gets what it missed (`?last_id=` does the same for
//! clients that reconnect by hand). A comment every
//! `heartbeat.interval_secs` keeps idle streams open through proxies.

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
use crate::session::{self, LiveSession};
use crate::transport::{authenticate, query_param};

pub fn routes(
    state: Arc<EdgeState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "sse")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            |profile: String,
             state: Arc<EdgeState>,
             cookie: Option<String>,
             last_event_id: Option<String>,
             query: String| async move {
                let last_id = last_event_id
                    .as_deref()
                    .filter(|id| !id.is_empty())
                    .or_else(|| query_param(&query, "last_id"));
                let opened = match authenticate(&state, cookie.as_deref()) {
                    Ok(user) => {
                        session::open(&state, user, &profile, Transport::Sse, last_id).await
                    }
                    Err(err) => Err(err),
                };
                opened
                    .map(|session| stream(&state, session))
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

fn stream(state: &Arc<EdgeState>, session: LiveSession) -> Response {
    let events = futures_util::stream::unfold(
        (session, state.clone(), false),
        |(mut session, state, ended)| async move {
            if ended {
                return None;
            }
            match session.next_event().await {
                Ok(event) => Some((event, (session, state, false))),
                Err(end) => {
                    let jitter = state.settings.drain.reconnect_jitter_ms;
                    let (last, reason) = session::last_event(end, jitter);
                    state.metrics.session_ended(reason);
                    tracing::info!(user_id = %session.user, profile_id = %session.profile, reason, "SSE session ended");
                    last.map(|event| (event, (session, state, true)))
                }
            }
        },
    );
    let metrics = state.metrics.clone();
    let events = events.map(move |out| {
        metrics.delivered_events.inc();
        Ok::<_, Infallible>(to_sse(&out))
    });
    let heartbeat = Duration::from_secs(state.settings.heartbeat.interval_secs);
    let stream = warp::sse::keep_alive().interval(heartbeat).stream(events);
    warp::reply::Reply::into_response(warp::sse::reply(stream))
}

fn to_sse(out: &Outbound) -> warp::sse::Event {
    let event = warp::sse::Event::default()
        .event(out.name)
        .data(out.json.as_str());
    match &out.id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}
