//! Server-Sent Events: `GET /live/{profile}/sse`. The stream opens with
//! `ready` and `presence`; each message event carries its position as the
//! SSE `id:`, so a browser's EventSource sends it back as `Last-Event-ID`
//! when it reconnects, and gets exactly what it missed (`?last_position=`
//! does the same for clients that reconnect by hand). A comment every
//! `heartbeat.interval_secs` keeps idle streams open through proxies.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt as _;
use warp::Filter;
use warp::http::HeaderMap;
use warp::reply::Response;

use crate::error::EdgeError;
use crate::events::Outbound;
use crate::metrics::Transport;
use crate::session::LiveSession;
use crate::transport::address::{self, ClientAddress};
use crate::transport::limits::AddressPermit;
use crate::transport::{Context, credentials, query_param};

pub fn routes(
    context: Arc<Context>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("live" / String / "sse")
        .and(warp::get())
        .and(warp::any().map(move || context.clone()))
        .and(warp::header::headers_cloned())
        .and(address::peer())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            |profile: String,
             context: Arc<Context>,
             headers: HeaderMap,
             peer,
             query: String| async move {
                let last_position = last_position(&headers, &query);
                context
                    .open(
                        credentials(&headers, &query),
                        ClientAddress::of(&headers, peer),
                        &profile,
                        last_position,
                        Transport::Sse,
                    )
                    .await
                    .map(|(session, place)| stream(&context, session, place))
                    .unwrap_or_else(EdgeError::into_response)
            },
        )
}

/// Where a reconnecting client resumes, unparsed: its `Last-Event-ID`
/// (sent by a browser's EventSource), else `?last_position=`.
pub(crate) fn last_position<'a>(headers: &'a HeaderMap, query: &'a str) -> Option<&'a str> {
    headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .filter(|id| !id.is_empty())
        .or_else(|| query_param(query, "last_position"))
}

/// The session's events as a stream; `place` (the session's in its
/// address's count) is held until the stream ends.
fn stream(context: &Arc<Context>, session: LiveSession, place: Option<AddressPermit>) -> Response {
    let events = futures_util::stream::unfold(
        (session, context.clone(), false, place),
        |(mut session, context, ended, place)| async move {
            if ended {
                return None;
            }
            match session.next_event().await {
                Ok(event) => Some((event, (session, context, false, place))),
                Err(end) => {
                    let reason = end.reason();
                    context.metrics.session_ended(reason);
                    tracing::info!(user_id = %session.user, profile_id = %session.profile, reason, "SSE session ended");
                    let last = end.last_event(context.settings.reconnect_jitter);
                    last.map(|event| (event, (session, context, true, place)))
                }
            }
        },
    );
    let metrics = context.metrics.clone();
    let events = events.map(move |out| {
        metrics.delivered_events.inc();
        Ok::<_, Infallible>(to_sse(&out))
    });
    let stream = warp::sse::keep_alive()
        .interval(context.settings.heartbeat)
        .stream(events);
    warp::reply::Reply::into_response(warp::sse::reply(stream))
}

fn to_sse(out: &Outbound) -> warp::sse::Event {
    let event = warp::sse::Event::default()
        .event(out.name)
        .data(out.json.as_str());
    match &out.position {
        Some(position) => event.id(position.to_string()),
        None => event,
    }
}

#[cfg(test)]
mod tests {
    use super::last_position;
    use crate::transport::test_headers as headers;

    #[test]
    fn last_event_id_comes_before_the_query_unless_empty() {
        let query = "last_position=1-0000abcd";
        let with_id = headers(&[("last-event-id", "2-0000abcd")]);
        assert_eq!(last_position(&with_id, query), Some("2-0000abcd"));
        let empty_id = headers(&[("last-event-id", "")]);
        assert_eq!(last_position(&empty_id, query), Some("1-0000abcd"));
        assert_eq!(last_position(&headers(&[]), "x=1"), None);
    }
}
