//! Where messages enter and leave: thin adapters between the client's
//! connection and the hub and publisher.
//!
//! - [`websocket`]: `GET /live/{profile}/ws`, sends and receives.
//! - [`sse`]: `GET /live/{profile}/sse`, receives only.
//! - [`http`]: `POST /live/{profile}/messages` (sends for SSE clients),
//!   `POST /login`, `POST /logout`.

pub mod http;
pub mod sse;
pub mod websocket;

use std::sync::Arc;
use std::time::SystemTime;

use rill_domain::{ProfileId, UserId};

use rill_sessions::LiveSessions;

use crate::app::EdgeState;
use crate::capacity::SessionPermit;
use crate::error::EdgeError;
use crate::events::ServerEvent;
use crate::hub::Subscription;
use crate::metrics::Transport;

/// A live session of one user on one profile, whatever its transport.
/// Dropping it leaves the hub and frees its place in the edge's capacity.
#[derive(Debug)]
pub struct LiveSession {
    pub user: UserId,
    pub profile: ProfileId,
    pub subscription: Subscription,
    live: LiveSessions,
    _permit: SessionPermit,
}

/// The caller's user, from the session cookie in `cookie_header`.
pub fn authenticate(state: &EdgeState, cookie_header: Option<&str>) -> Result<UserId, EdgeError> {
    Ok(state.cookies.verify(cookie_header, SystemTime::now())?)
}

/// The checks every stream of an authenticated `user` passes before it
/// opens: a valid profile id, an edge not shutting down, room on this edge,
/// membership of the profile.
pub async fn open_session(
    state: &Arc<EdgeState>,
    user: UserId,
    profile: &str,
    transport: Transport,
) -> Result<LiveSession, EdgeError> {
    let profile: ProfileId = profile.parse()?;
    if state.shutdown.is_cancelled() {
        return Err(EdgeError::ShuttingDown);
    }
    let permit = state
        .capacity
        .try_acquire(transport)
        .ok_or(EdgeError::AtCapacity)?;
    state.membership.check(user, profile).await?;
    let depth = state.settings.limits.session_queue_depth;
    let subscription = state.hub.subscribe(profile, user, depth);
    state.live.register(&[(user, profile)]).await?;
    tracing::info!(user_id = %user, profile_id = %profile, ?transport, "session opened");
    Ok(LiveSession {
        user,
        profile,
        subscription,
        live: state.live.clone(),
        _permit: permit,
    })
}

impl LiveSession {
    /// The `ready` event that opens every stream.
    pub fn ready_event(&self, edge_id: &str) -> Arc<crate::events::Outbound> {
        ServerEvent::Ready {
            edge_id,
            profile_id: self.profile,
            user_id: self.user,
        }
        .to_outbound()
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let (live, user, profile) = (self.live.clone(), self.user, self.profile);
        tokio::spawn(async move {
            if let Err(err) = live.unregister(user, profile).await {
                // The entry expires by its TTL instead.
                tracing::warn!(error = %err, "cannot unregister a closed session");
            }
        });
        tracing::info!(user_id = %self.user, profile_id = %self.profile, "session closed");
    }
}
