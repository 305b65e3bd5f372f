//! A live session of one user on one profile, whatever its transport: the
//! checks and the lock it opens with, what it sends first (ready, presence,
//! what a reconnecting client missed), then live events until it ends.
//!
//! - [`locks`]: the one-session-per-pair lock, kept while the session lives.

pub mod locks;

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_domain::{MessageId, PresenceChange, ProfileId, UserId};
use tokio::time::Sleep;

use crate::app::EdgeState;
use crate::availability::Level;
use crate::capacity::SessionPermit;
use crate::error::EdgeError;
use crate::events::{Outbound, ServerEvent};
use crate::hub::{End, Next, ReconnectReason, Subscription};
use crate::metrics::Transport;
use crate::recovery;
use crate::to_kafka::now_ms;

pub use locks::{Lease, SessionLocks};

/// A live session. Dropping it leaves the hub, frees its place in the
/// edge's capacity and releases its lock.
#[derive(Debug)]
pub struct LiveSession {
    pub user: UserId,
    pub profile: ProfileId,
    subscription: Subscription,
    /// Sent before any live event: ready, presence, replayed messages.
    /// Freed once sent (every idle session would keep its buffer).
    opening: VecDeque<Arc<Outbound>>,
    /// Ids of the replayed messages, not to be sent again when they also
    /// arrive live; `None` when there are none (boxed: most sessions have
    /// none, and the session is part of every idle session's memory).
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every session instead of an empty set's 48"
    )]
    replayed: Option<Box<HashSet<MessageId>>>,
    /// When the session reaches `lifetime.max_secs` (if set).
    lifetime: Option<Pin<Box<Sleep>>>,
    _lease: Lease,
    _permit: SessionPermit,
}

/// Opens a session of authenticated `user` on `profile` (an id, unparsed):
/// a valid profile, an edge taking sessions, membership, the lock, then
/// presence and, with `last_id`, what the client missed since that message.
pub async fn open(
    state: &Arc<EdgeState>,
    user: UserId,
    profile: &str,
    transport: Transport,
    last_id: Option<&str>,
) -> Result<LiveSession, EdgeError> {
    let opened = try_open(state, user, profile, transport, last_id).await;
    if let Err(err) = &opened {
        state.metrics.session_refused(err.code());
    }
    opened
}

async fn try_open(
    state: &Arc<EdgeState>,
    user: UserId,
    profile: &str,
    transport: Transport,
    last_id: Option<&str>,
) -> Result<LiveSession, EdgeError> {
    let profile: ProfileId = profile.parse()?;
    let last_id: Option<MessageId> = last_id.map(str::parse).transpose()?;
    if state.shutdown.is_cancelled() {
        return Err(EdgeError::ShuttingDown);
    }
    if state.availability.level() == Level::Critical {
        return Err(EdgeError::AtCapacity);
    }
    let permit = state
        .capacity
        .try_acquire(transport)
        .ok_or(EdgeError::AtCapacity)?;
    state.membership.check(user, profile).await?;
    let lock_wait = Duration::from_millis(state.settings.lock_wait_ms);
    let mut lease = state
        .locks
        .acquire(user, profile, lock_wait, &state.publisher)
        .await?;

    let depth = state.settings.limits.session_queue_depth;
    let recovery = &state.settings.recovery;
    let (subscription, recent) = match last_id {
        Some(last) => {
            let since = recovery::replay_from(last, recovery);
            let (sub, recent) = state.hub.subscribe_since(profile, user, depth, since);
            (sub, Some((since, recent)))
        }
        None => (state.hub.subscribe(profile, user, depth), None),
    };
    lease.hold(subscription.id(), subscription.handle());

    let registry = state.locks.registry();
    if let Err(err) = registry.register(&[(user, profile)]).await {
        tracing::warn!(error = %err, "cannot register the session in Redis");
    }
    let max_users = state.settings.limits.max_presence_users;
    let (mut users, truncated) = registry
        .some_live_users(profile, max_users)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot read who is live");
            (Vec::new(), false)
        });
    // You first, whether the read listed you or not.
    users.retain(|u| *u != user);
    users.truncate(max_users.saturating_sub(1));
    users.insert(0, user);
    // Queued now, not waited for: a broker under load held every open for
    // up to the message timeout. The leave is queued later by the same
    // producer to the same partition (keyed by user), so it stays behind.
    state.tasks.spawn(state.publisher.presence(PresenceChange {
        user,
        profile,
        joined: true,
        fence: lease.fence(),
        at_ms: now_ms(),
    }));

    let mut opening = VecDeque::new();
    opening.push_back(
        ServerEvent::Ready {
            edge_id: &state.edge_id,
            profile_id: profile,
            user_id: user,
        }
        .to_outbound(),
    );
    opening.push_back(
        ServerEvent::Presence {
            profile_id: profile,
            users: &users,
            truncated,
        }
        .to_outbound(),
    );
    let mut replayed = HashSet::new();
    if let Some((since, recent)) = recent {
        match recovery::replay(
            state.store.as_ref(),
            profile,
            since,
            recent,
            recovery.max_replay,
        )
        .await
        {
            Ok(replay) => {
                if replay.gap {
                    opening.push_back(ServerEvent::Gap.to_outbound());
                }
                state
                    .metrics
                    .replayed_messages
                    .inc_by(replay.events.len() as u64);
                opening.extend(replay.events);
                replayed = replay.ids;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read history to replay: telling the client of a gap");
                opening.push_back(ServerEvent::Gap.to_outbound());
            }
        }
    }
    tracing::info!(user_id = %user, profile_id = %profile, ?transport, fence = lease.fence(), replayed = replayed.len(), "session opened");
    Ok(LiveSession {
        user,
        profile,
        subscription,
        opening,
        replayed: (!replayed.is_empty()).then(|| Box::new(replayed)),
        lifetime: lifetime(&state.settings.lifetime),
        _lease: lease,
        _permit: permit,
    })
}

/// A session's deadline: `max_secs` plus a random share of `dither_secs`.
fn lifetime(settings: &crate::settings::Lifetime) -> Option<Pin<Box<Sleep>>> {
    if settings.max_secs == 0 {
        return None;
    }
    let dither_ms = settings.dither_secs * 1000;
    let extra = if dither_ms == 0 {
        0
    } else {
        rand::random::<u64>() % dither_ms
    };
    let after = Duration::from_secs(settings.max_secs) + Duration::from_millis(extra);
    Some(Box::pin(tokio::time::sleep(after)))
}

impl LiveSession {
    /// The next event for the client, or why the session ends.
    pub async fn next(&mut self) -> Next {
        if let Some(event) = self.next_opening() {
            return Next::Event(event);
        }
        loop {
            let next = match self.lifetime.as_mut() {
                Some(deadline) => tokio::select! {
                    _ = deadline => return Next::End(End::Reconnect(ReconnectReason::Lifetime)),
                    next = self.subscription.next() => next,
                },
                None => self.subscription.next().await,
            };
            match next {
                Next::Event(event) if self.replayed_before(&event) => continue,
                next => return next,
            }
        }
    }

    /// The next event, or why the session ends, without heartbeats: for a
    /// transport with a keep-alive of its own (SSE: warp's comments).
    pub async fn next_event(&mut self) -> Result<Arc<Outbound>, End> {
        loop {
            match self.next().await {
                Next::Event(event) => return Ok(event),
                Next::Heartbeat => {}
                Next::End(end) => return Err(end),
            }
        }
    }

    /// An event already waiting, if any, without waiting: the transport
    /// writes it in one go with the one [`next`](Self::next) returned.
    pub fn ready(&mut self) -> Option<Arc<Outbound>> {
        if let Some(event) = self.next_opening() {
            return Some(event);
        }
        while let Some(event) = self.subscription.try_next() {
            if !self.replayed_before(&event) {
                return Some(event);
            }
        }
        None
    }

    fn next_opening(&mut self) -> Option<Arc<Outbound>> {
        let event = self.opening.pop_front()?;
        if self.opening.is_empty() {
            self.opening = VecDeque::new();
        }
        Some(event)
    }

    /// Whether `event` was sent already in the replay (it is forgotten
    /// then: a message arrives live once).
    fn replayed_before(&mut self, event: &Outbound) -> bool {
        let (Some(id), Some(ids)) = (event.id, self.replayed.as_mut()) else {
            return false;
        };
        let replayed = ids.remove(&id);
        if ids.is_empty() {
            self.replayed = None;
        }
        replayed
    }
}

/// The last event a session gets when it ends for `end` (none for a client
/// too slow to read it), and the reason, for logs and metrics.
pub fn last_event(end: End, reconnect_jitter_ms: u64) -> (Option<Arc<Outbound>>, &'static str) {
    match end {
        End::NotAMember => (Some(EdgeError::NotAMember.event(None)), "not_a_member"),
        End::Reconnect(why) => {
            let after_ms = if reconnect_jitter_ms == 0 {
                0
            } else {
                rand::random::<u64>() % reconnect_jitter_ms
            };
            let event = ServerEvent::Reconnect {
                after_ms,
                reason: why.as_str(),
            };
            (Some(event.to_outbound()), why.as_str())
        }
        End::TooSlow => (None, "too_slow"),
    }
}
