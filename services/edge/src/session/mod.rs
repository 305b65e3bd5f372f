//! Live sessions, whatever their transport. [`Sessions`] is what the
//! transports are handed: it opens a session (the checks and the lock it
//! opens with, what it sends first: ready, presence, what a reconnecting
//! client missed) and sends a client's message. A [`LiveSession`] then gives
//! the session's events until it ends; dropping it closes it: it leaves the
//! hub, publishes the `leave`, then releases its lock.
//!
//! - [`locks`]: the one-session-per-pair lock, kept while the session lives.
//! - [`peers`]: this edge's heartbeat in Redis; the sessions of a dead edge,
//!   ended by a survivor.

pub mod locks;
pub mod peers;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_domain::{MessageId, Position, PresenceChange, ProfileId, UserId};
use rill_runtime::clock::now_ms;
use rill_runtime::shutdown::CancellationToken;
use rill_sessions::{Claim, SendKeys};
use tokio::time::Sleep;
use tokio_util::task::TaskTracker;

use crate::availability::{Availability, Level};
use crate::capacity::{Capacity, SessionPermit};
use crate::disconnect::{Disconnect, ReconnectReason};
use crate::events::{Outbound, ServerEvent};
use crate::hub::{Hub, Next, Subscription};
use crate::membership::{Membership, MembershipError};
use crate::metrics::{EdgeMetrics, Transport};
use crate::recovery::RecentMessages;
use crate::settings::{Lifetime, Recovery};
use crate::to_kafka::{PublishError, Publisher};

pub use locks::{AcquireError, Lease, SessionLocks};

/// How long a session waits for a just-started edge to read its recovery
/// window back (a few seconds at most) before it is refused with 503.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// Why a session could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this edge is shutting down: reconnect")]
    ShuttingDown,
    #[error("this edge is at capacity: retry in a moment")]
    AtCapacity,
    #[error("this edge is still reading its recovery window: retry in a moment")]
    Starting,
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Lock(#[from] AcquireError),
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The idempotency keys (Redis) did not answer.
    #[error("idempotency keys: {0}")]
    Keys(#[from] rill_sessions::SessionsError),
}

/// The settings a session lives by (from the edge's settings).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `limits.session_queue_depth`.
    pub queue_depth: usize,
    /// `limits.max_presence_users`.
    pub max_presence_users: usize,
    /// `lock_wait_ms`.
    pub lock_wait: Duration,
    pub recovery: Recovery,
    pub lifetime: Lifetime,
}

/// Opens live sessions and takes their sends: the hub, the locks,
/// membership, capacity and the publisher, and nothing else of the edge.
#[derive(Debug)]
pub struct Sessions {
    pub edge_id: String,
    pub settings: SessionSettings,
    pub hub: Arc<Hub>,
    pub locks: Arc<SessionLocks>,
    pub membership: Arc<Membership>,
    pub capacity: Arc<Capacity>,
    pub availability: Arc<Availability>,
    pub publisher: Arc<Publisher>,
    /// Idempotency keys of sends (Redis).
    pub send_keys: SendKeys,
    /// Recent messages, for what a reconnecting client missed.
    pub recent: Arc<RecentMessages>,
    pub metrics: Arc<EdgeMetrics>,
    /// Cancelled when the edge starts draining: no session opens after.
    pub shutdown: CancellationToken,
    /// Presence joins on their way to Kafka (shutdown waits for them).
    pub tasks: TaskTracker,
}

/// A live session. Dropping it closes it (see the module doc).
#[derive(Debug)]
pub struct LiveSession {
    pub user: UserId,
    pub profile: ProfileId,
    subscription: Subscription,
    /// Sent before any live event: ready, presence, replayed messages.
    /// Freed once sent (every idle session would keep its buffer).
    opening: VecDeque<Arc<Outbound>>,
    /// The replay (or the newest page after a gap) went up to this
    /// position: messages at or before it that also arrive live (queued
    /// while the replay was read) are not sent again.
    replayed_up_to: Option<u64>,
    /// When the session reaches `lifetime.max_secs` (if set).
    lifetime: Option<Pin<Box<Sleep>>>,
    /// Taken when the session closes, to be released after its `leave`.
    lease: Option<Lease>,
    publisher: Arc<Publisher>,
    _permit: SessionPermit,
}

impl LiveSession {
    /// Marks the session as `login`'s: the login's end (logout) ends it.
    pub fn belongs_to(&self, login: rill_domain::LoginId) {
        self.subscription.belongs_to(login);
    }
}

impl Sessions {
    /// Opens a session of authenticated `user` on `profile`: an edge taking
    /// sessions, membership, the lock, then presence and, with
    /// `last_position`, what the client missed after it.
    pub async fn open(
        &self,
        user: UserId,
        profile: ProfileId,
        transport: Transport,
        last_position: Option<Position>,
    ) -> Result<LiveSession, OpenError> {
        let opened = self.try_open(user, profile, transport, last_position).await;
        if let Err(err) = &opened {
            self.metrics.session_refused(refusal(err));
        }
        opened
    }

    /// Sends `body` from `user` to `profile`, if `user` is a member; the
    /// message's id once Kafka has it. With an idempotency `key`, a send
    /// whose key was used already (by this user, on any edge, within
    /// `limits.idempotency_window_secs`) is not sent again: it answers the
    /// first send's id.
    pub async fn send(
        &self,
        user: UserId,
        profile: ProfileId,
        body: String,
        key: Option<&str>,
    ) -> Result<MessageId, SendError> {
        self.membership.check(user, profile).await?;
        let id = MessageId::now();
        let Some(key) = key else {
            return Ok(self.publisher.publish(id, user, profile, body).await?);
        };
        match self.send_keys.claim(user, key, id).await? {
            Claim::Sent(first) => {
                self.metrics.sends_repeated.inc();
                Ok(first)
            }
            Claim::New => match self.publisher.publish(id, user, profile, body).await {
                Ok(id) => Ok(id),
                Err(err) => {
                    if let Err(release) = self.send_keys.release(user, key).await {
                        tracing::warn!(error = %release, "cannot give an idempotency key back");
                    }
                    Err(err.into())
                }
            },
        }
    }

    /// Sends `body` from `user`'s live session on `profile`. An unbind ends
    /// the session within moments; membership is checked again on every
    /// send all the same (a cache hit while it holds), so that nothing is
    /// sent in between.
    pub async fn send_live(
        &self,
        user: UserId,
        profile: ProfileId,
        body: String,
        key: Option<&str>,
    ) -> Result<MessageId, SendError> {
        self.send(user, profile, body, key).await
    }

    async fn try_open(
        &self,
        user: UserId,
        profile: ProfileId,
        transport: Transport,
        last_position: Option<Position>,
    ) -> Result<LiveSession, OpenError> {
        if self.shutdown.is_cancelled() {
            return Err(OpenError::ShuttingDown);
        }
        // Before the start-up read of the window has caught up, a session
        // could get old messages as live ones, and a replay could miss.
        if !self.recent.wait_caught_up(CATCH_UP_WAIT).await {
            return Err(OpenError::Starting);
        }
        if self.availability.level() == Level::Critical {
            return Err(OpenError::AtCapacity);
        }
        let permit = self
            .capacity
            .try_acquire(transport)
            .ok_or(OpenError::AtCapacity)?;
        self.membership.check(user, profile).await?;
        let mut lease = self
            .locks
            .acquire(user, profile, self.settings.lock_wait)
            .await?;

        // Subscribed before the replay is read: a message is in the replay,
        // or queued, or both (sent once, see `replayed_up_to`).
        let subscription = self.hub.subscribe(profile, user, self.settings.queue_depth);
        lease.hold(subscription.id(), subscription.handle());

        let registry = self.locks.registry();
        if let Err(err) = registry.register(&[(user, profile)]).await {
            tracing::warn!(error = %err, "cannot register the session in Redis");
        }
        let max_users = self.settings.max_presence_users;
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
        // Not waited for: a broker under load held every open for up to the
        // message timeout. The session's leave waits for it (`presence`).
        self.tasks.spawn(self.publisher.presence(PresenceChange {
            user,
            profile,
            joined: true,
            fence: lease.fence(),
            at_ms: now_ms(),
        }));

        let mut opening = VecDeque::new();
        opening.push_back(
            ServerEvent::Ready {
                edge_id: &self.edge_id,
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
        let mut replayed_up_to = None;
        if let Some(position) = last_position {
            let replay = self
                .recent
                .replay(profile, position, &self.settings.recovery);
            if let Some(reason) = replay.gap {
                opening.push_back(
                    ServerEvent::Gap {
                        reason: reason.code(),
                    }
                    .to_outbound(),
                );
            }
            self.metrics
                .replayed_messages
                .inc_by(replay.events.len() as u64);
            opening.extend(replay.events);
            replayed_up_to = replay.up_to;
        }
        tracing::info!(user_id = %user, profile_id = %profile, ?transport, fence = lease.fence(), position = ?last_position, "session opened");
        Ok(LiveSession {
            user,
            profile,
            subscription,
            opening,
            replayed_up_to,
            lifetime: lifetime(&self.settings.lifetime),
            lease: Some(lease),
            publisher: self.publisher.clone(),
            _permit: permit,
        })
    }
}

/// The `reason` label of a refused session.
fn refusal(err: &OpenError) -> &'static str {
    match err {
        OpenError::ShuttingDown => "shutting_down",
        OpenError::AtCapacity => "at_capacity",
        OpenError::Starting => "starting",
        OpenError::Membership(err) => err.code(),
        OpenError::Lock(err) => err.code(),
    }
}

/// A session's deadline: `max_secs` plus a random share of `dither_secs`.
fn lifetime(settings: &Lifetime) -> Option<Pin<Box<Sleep>>> {
    if settings.max_secs.is_zero() {
        return None;
    }
    let dither_ms = u64::try_from(settings.dither_secs.as_millis()).unwrap_or(u64::MAX);
    let extra = if dither_ms == 0 {
        0
    } else {
        rand::random::<u64>() % dither_ms
    };
    let after = settings.max_secs + Duration::from_millis(extra);
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
                    _ = deadline => return Next::End(Disconnect::Reconnect(ReconnectReason::Lifetime)),
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
    pub async fn next_event(&mut self) -> Result<Arc<Outbound>, Disconnect> {
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

    /// Whether `event` was sent already in the replay. The first message
    /// past the replay ends the check: the rest come in order after it.
    fn replayed_before(&mut self, event: &Outbound) -> bool {
        let (Some(position), Some(up_to)) = (event.position, self.replayed_up_to) else {
            return false;
        };
        if position.offset <= up_to {
            return true;
        }
        self.replayed_up_to = None;
        false
    }
}

/// The close path: the `leave` is published (after this session's `join`,
/// retried until Kafka has it), and the lock is released once Kafka has the
/// leave, so that the pair's next session, which waits for the lock,
/// publishes its `join` after it. The hub forgets the session when its
/// subscription drops, right after this.
impl Drop for LiveSession {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if lease.fenced() {
            return; // declared dead: the survivor publishes the leave (`peers`)
        }
        let leave = self.publisher.presence(PresenceChange {
            user: self.user,
            profile: self.profile,
            joined: false,
            fence: lease.fence(),
            at_ms: now_ms(),
        });
        lease.release_after(leave);
    }
}
