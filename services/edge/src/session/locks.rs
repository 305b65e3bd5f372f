//! The locks of this edge's live sessions: taken when a session opens,
//! refreshed together every `ttl / 3` (with the registry entries in Redis),
//! released when the session closes (after its `leave` reached Kafka: see
//! [`Lease::release_after`]). Closed sessions' locks and registry entries
//! are released by one task, in batches of what closed meanwhile: a drain
//! closing thousands of sessions makes a few Redis calls, not thousands.
//!
//! A session whose lock is lost (expired and maybe taken by another) or
//! could not be confirmed for a whole TTL ends with `reconnect`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rill_domain::{ProfileId, UserId};
use rill_runtime::shutdown::CancellationToken;
use rill_sessions::{LiveSessions, Lock, LockError, LockManager, Refresh};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::disconnect::{Disconnect, ReconnectReason};
use crate::hub::{Hub, SessionHandle};

/// How often a busy lock is tried again while waiting for it.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// Most closed sessions released by one batch (a few Redis calls).
const RELEASE_BATCH: usize = 500;

#[derive(Debug)]
pub struct SessionLocks {
    manager: LockManager,
    registry: LiveSessions,
    held: Mutex<HashMap<u64, Held>>,
    /// Leaves of closed sessions on their way to Kafka, which shutdown
    /// waits for; each then queues its lock in `closed`.
    leaving: TaskTracker,
    /// To the task that releases closed sessions' locks in batches; taken
    /// (closing the queue) at shutdown once every leave was sent.
    closed: Mutex<Option<mpsc::UnboundedSender<Closed>>>,
    releaser: Mutex<Option<JoinHandle<()>>>,
}

/// A closed session's lock, to release; `registered`: its registry entry
/// too.
#[derive(Debug)]
struct Closed {
    lock: Lock,
    registered: bool,
}

#[derive(Debug)]
struct Held {
    lock: Lock,
    session: SessionHandle,
    /// When a majority last confirmed the lock.
    confirmed: Instant,
}

/// Why a lock could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(
        "this user already has a live session on this profile (another tab, device or edge); close it first"
    )]
    AlreadyLive,
    #[error("live-session locks are unavailable: {0}")]
    Unavailable(LockError),
}

impl AcquireError {
    /// A stable name, for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyLive => "already_live",
            Self::Unavailable(_) => "locks_unavailable",
        }
    }
}

/// A session's lock; dropping it releases the lock (see the module doc).
#[derive(Debug)]
pub struct Lease {
    locks: Arc<SessionLocks>,
    lock: Lock,
    slot: Option<u64>,
}

impl SessionLocks {
    /// Also starts the task that releases closed sessions' locks.
    pub fn new(manager: LockManager, registry: LiveSessions) -> Arc<Self> {
        let (closed, queue) = mpsc::unbounded_channel();
        let locks = Arc::new(Self {
            manager,
            registry,
            held: Mutex::default(),
            leaving: TaskTracker::new(),
            closed: Mutex::new(Some(closed)),
            releaser: Mutex::default(),
        });
        let releaser = tokio::spawn(release_closed(
            locks.manager.clone(),
            locks.registry.clone(),
            queue,
        ));
        *locks.releaser.lock().unwrap_or_else(|e| e.into_inner()) = Some(releaser);
        locks
    }

    /// Waits for the leaves of closed sessions to be sent and their locks
    /// released.
    pub async fn released(&self) {
        self.leaving.close();
        self.leaving.wait().await;
        drop(self.closed.lock().unwrap_or_else(|e| e.into_inner()).take());
        let releaser = self
            .releaser
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(releaser) = releaser {
            let _ = releaser.await;
        }
    }

    /// Queues a closed session's lock for release; released at once when
    /// the queue is already closed (shutdown is over).
    async fn close(&self, closed: Closed) {
        let queue = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let closed = match queue {
            Some(queue) => match queue.send(closed) {
                Ok(()) => return,
                Err(mpsc::error::SendError(closed)) => closed,
            },
            None => closed,
        };
        release(&self.manager, &self.registry, std::slice::from_ref(&closed)).await;
    }

    pub fn registry(&self) -> &LiveSessions {
        &self.registry
    }

    /// The lock of (user, profile), waiting up to `wait` for another session
    /// to let go of it.
    pub async fn acquire(
        self: &Arc<Self>,
        user: UserId,
        profile: ProfileId,
        wait: Duration,
    ) -> Result<Lease, AcquireError> {
        let give_up = Instant::now() + wait;
        let lock = loop {
            match self.manager.acquire(user, profile).await {
                Ok(lock) => break lock,
                Err(LockError::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(LockError::Busy) => return Err(AcquireError::AlreadyLive),
                Err(err @ LockError::NoQuorum { .. }) => {
                    return Err(AcquireError::Unavailable(err));
                }
            }
        };
        Ok(Lease {
            locks: self.clone(),
            lock,
            slot: None,
        })
    }

    /// Refreshes every held lock and registry entry every `ttl / 3`, until
    /// `shutdown`.
    pub async fn keep(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.registry.refresh_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.refresh().await;
            let pairs = hub.pairs();
            if let Err(err) = self.registry.register(&pairs).await {
                tracing::warn!(error = %err, sessions = pairs.len(), "cannot refresh live sessions");
            }
        }
    }

    async fn refresh(&self) {
        let (slots, locks): (Vec<u64>, Vec<Lock>) = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.iter().map(|(slot, h)| (*slot, h.lock.clone())).unzip()
        };
        if locks.is_empty() {
            return;
        }
        let asked = Instant::now();
        let outcomes = self.manager.refresh(&locks).await;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, outcome) in slots.iter().zip(outcomes) {
            let Some(h) = held.get_mut(slot) else {
                continue; // closed meanwhile
            };
            let lost = match outcome {
                Refresh::Held => {
                    h.confirmed = asked;
                    false
                }
                Refresh::Lost => true,
                Refresh::Unknown => asked.duration_since(h.confirmed) >= self.manager.ttl(),
            };
            if lost {
                tracing::warn!(user_id = %h.lock.user, profile_id = %h.lock.profile, ?outcome, "live-session lock lost: ending the session");
                h.session
                    .end(Disconnect::Reconnect(ReconnectReason::LockLost));
            }
        }
    }
}

/// Releases what `queue` brings, in batches of what arrived meanwhile, until
/// the queue closes.
async fn release_closed(
    manager: LockManager,
    registry: LiveSessions,
    mut queue: mpsc::UnboundedReceiver<Closed>,
) {
    let mut batch = Vec::with_capacity(RELEASE_BATCH);
    while queue.recv_many(&mut batch, RELEASE_BATCH).await > 0 {
        release(&manager, &registry, &batch).await;
        batch.clear();
    }
}

async fn release(manager: &LockManager, registry: &LiveSessions, closed: &[Closed]) {
    let registered: Vec<(UserId, ProfileId)> = closed
        .iter()
        .filter(|c| c.registered)
        .map(|c| (c.lock.user, c.lock.profile))
        .collect();
    if !registered.is_empty()
        && let Err(err) = registry.unregister(&registered).await
    {
        // The entries expire by their TTL instead.
        tracing::warn!(error = %err, sessions = registered.len(), "cannot unregister closed sessions");
    }
    let locks: Vec<Lock> = closed.iter().map(|c| c.lock.clone()).collect();
    manager.release(&locks).await;
}

impl Lease {
    pub fn fence(&self) -> u64 {
        self.lock.fence
    }

    /// Starts refreshing the lock for the hub session `session`.
    pub fn hold(&mut self, slot: u64, session: SessionHandle) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(
            slot,
            Held {
                lock: self.lock.clone(),
                session,
                confirmed: Instant::now(),
            },
        );
        self.slot = Some(slot);
    }

    /// Releases the lock once `leave` (the session's presence `leave`,
    /// already queued) is done, so that the pair's next session, which can
    /// only start once the lock is free, publishes its `join` after this
    /// `leave`. Shutdown waits for it ([`SessionLocks::released`]).
    pub fn release_after(self, leave: impl Future<Output = ()> + Send + 'static) {
        let locks = self.locks.clone();
        locks.leaving.spawn(async move {
            leave.await;
            drop(self);
        });
    }

    /// Stops refreshing the lock; what is left to release.
    fn closed(&mut self) -> Closed {
        if let Some(slot) = self.slot {
            let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
            held.remove(&slot);
        }
        Closed {
            lock: self.lock.clone(),
            registered: self.slot.is_some(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let closed = self.closed();
        let locks = self.locks.clone();
        self.locks
            .leaving
            .spawn(async move { locks.close(closed).await });
    }
}
