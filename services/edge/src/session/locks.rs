//! The locks of this edge's live sessions: taken when a session opens,
//! refreshed together every `ttl / 3` (their registry entries in Redis
//! with them, by the same script), released when the session closes (after
//! its `leave` reached Kafka: see [`Lease::release_after`]). Closed
//! sessions' locks and registry entries are released by one task, in
//! batches of what closed meanwhile: a drain closing thousands of sessions
//! makes a few Redis calls, not thousands.
//!
//! A session whose lock is lost (another session has the pair) or could
//! not be confirmed for a whole TTL ends with `reconnect`. A lock a Redis
//! server lost (restarted empty) is taken again by the refresh
//! (`rill_sessions::lock`); so that it never takes again the lock of a
//! session that closed meanwhile after its release, releases wait while a
//! refresh is under way (`SessionLocks::refreshing`).
//!
//! Every lock is taken for this edge's current incarnation (`peers.rs`),
//! which records it in Redis for the survivors, should the edge die. When
//! the edge finds it was declared dead ([`SessionLocks::fence`]), it ends
//! every session of the old incarnation with `reconnect`
//! (`declared_dead`) and leaves their locks, registry entries and leaves
//! to the survivor that declared it dead: they may belong to newer
//! sessions by now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rill_domain::{ProfileId, UserId};
use rill_runtime::shutdown::CancellationToken;
use rill_sessions::{Incarnation, LiveSessions, Lock, LockError, LockManager, Refresh};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::disconnect::{Disconnect, ReconnectReason};
use crate::hub::SessionHandle;

/// How often a busy lock is tried again while waiting for it.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// Most closed sessions released by one batch (a few Redis calls).
const RELEASE_BATCH: usize = 500;

#[derive(Debug)]
pub struct SessionLocks {
    manager: LockManager,
    registry: LiveSessions,
    /// This edge's node id, for its next incarnation.
    node_id: String,
    /// The incarnation new locks are taken for.
    holder: Mutex<Arc<Holder>>,
    /// When a majority of Redis servers last took this edge's heartbeat
    /// (`peers.rs`), and how old that may get before another edge may
    /// have declared this one dead (`edges.dead_after_ms`).
    last_beat: Mutex<Instant>,
    dead_after: Duration,
    held: Mutex<HashMap<u64, Held>>,
    /// Leaves of closed sessions on their way to Kafka, which shutdown
    /// waits for; each then queues its lock in `closed`.
    leaving: TaskTracker,
    /// To the task that releases closed sessions' locks in batches; taken
    /// (closing the queue) at shutdown once every leave was sent.
    closed: Mutex<Option<mpsc::UnboundedSender<Lock>>>,
    releaser: Mutex<Option<JoinHandle<()>>>,
    /// Held by a refresh from before it reads the held locks until Redis
    /// answered, and by each release: a lock released after the refresh
    /// read it is released after the refresh, which may have taken it
    /// again (a lock gone from Redis is re-established).
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

/// An incarnation of this edge, and whether it was declared dead.
#[derive(Debug)]
struct Holder {
    incarnation: Incarnation,
    fenced: AtomicBool,
}

impl Holder {
    fn new(node_id: &str) -> Arc<Self> {
        Arc::new(Self {
            incarnation: Incarnation::new(node_id),
            fenced: AtomicBool::new(false),
        })
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Held {
    lock: Lock,
    session: SessionHandle,
    holder: Arc<Holder>,
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
    holder: Arc<Holder>,
    slot: Option<u64>,
}

impl SessionLocks {
    /// Locks of edge `node_id`, under a first incarnation, whose heartbeat
    /// is taken for dead after `dead_after`. Also starts the task that
    /// releases closed sessions' locks.
    pub fn new(
        manager: LockManager,
        registry: LiveSessions,
        node_id: &str,
        dead_after: Duration,
    ) -> Arc<Self> {
        let (closed, queue) = mpsc::unbounded_channel();
        let refreshing = Arc::new(tokio::sync::Mutex::new(()));
        let locks = Arc::new(Self {
            manager,
            registry,
            node_id: node_id.to_owned(),
            holder: Mutex::new(Holder::new(node_id)),
            last_beat: Mutex::new(Instant::now()),
            dead_after,
            held: Mutex::default(),
            leaving: TaskTracker::new(),
            closed: Mutex::new(Some(closed)),
            releaser: Mutex::default(),
            refreshing: refreshing.clone(),
        });
        let releaser = tokio::spawn(release_closed(locks.manager.clone(), queue, refreshing));
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
    async fn close(&self, lock: Lock) {
        let queue = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let lock = match queue {
            Some(queue) => match queue.send(lock) {
                Ok(()) => return,
                Err(mpsc::error::SendError(lock)) => lock,
            },
            None => lock,
        };
        let _refresh_over = self.refreshing.lock().await;
        self.manager.release(std::slice::from_ref(&lock)).await;
    }

    pub fn registry(&self) -> &LiveSessions {
        &self.registry
    }

    fn holder(&self) -> Arc<Holder> {
        self.holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A majority took this edge's heartbeat sent at `at`.
    pub fn beat_taken(&self, at: Instant) {
        *self.last_beat.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// When a majority last took this edge's heartbeat.
    pub fn last_beat(&self) -> Instant {
        *self.last_beat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another edge may have declared this one dead: its heartbeat
    /// is older than `edges.dead_after_ms`.
    fn may_be_dead(&self) -> bool {
        self.last_beat().elapsed() >= self.dead_after
    }

    /// The incarnation this edge takes locks for now.
    pub fn incarnation(&self) -> Incarnation {
        self.holder().incarnation.clone()
    }

    /// This edge was declared dead (or may have been): new locks are taken
    /// for a new incarnation, and every session of the old one ends with
    /// `reconnect`, leaving its lock, registry entry and `leave` to the
    /// survivor that reaps the old incarnation. The old incarnation and how
    /// many sessions ended.
    pub fn fence(&self) -> (Incarnation, usize) {
        // Under `held`: a lease of the new incarnation cannot be held (and
        // then ended here) before the swap is over.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(
            &mut *self.holder.lock().unwrap_or_else(|e| e.into_inner()),
            Holder::new(&self.node_id),
        );
        old.fenced.store(true, Ordering::Release);
        let before = held.len();
        held.retain(|_, h| {
            let dead = Arc::ptr_eq(&h.holder, &old);
            if dead {
                h.session
                    .end(Disconnect::Reconnect(ReconnectReason::DeclaredDead));
            }
            !dead
        });
        (old.incarnation.clone(), before - held.len())
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
        let holder = self.holder();
        let lock = loop {
            match self
                .manager
                .acquire(&holder.incarnation, user, profile)
                .await
            {
                Ok(lock) => break lock,
                Err(LockError::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(LockError::Busy) => return Err(AcquireError::AlreadyLive),
                Err(err @ (LockError::NoQuorum { .. } | LockError::HolderDead)) => {
                    return Err(AcquireError::Unavailable(err));
                }
            }
        };
        Ok(Lease {
            locks: self.clone(),
            lock,
            holder,
            slot: None,
        })
    }

    /// Refreshes every held lock, and its registry entries, every
    /// `ttl / 3`, until `shutdown`.
    pub async fn keep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.registry.refresh_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.refresh().await;
        }
    }

    /// Refreshes the locks of the live incarnation. The script re-adds a
    /// registry entry only while the lock holds the session's token, so a
    /// refresh after this edge was declared dead (it was paused, say)
    /// neither extends a lock a survivor freed nor brings its entries back.
    ///
    /// While the heartbeat is older than `edges.dead_after_ms` (before the
    /// refresh, or after it: the edge may have been paused in between),
    /// the outcomes are not acted on: a lock "lost" then may have been
    /// freed by the survivor that declared this edge dead, and its session
    /// must end as the heartbeat says (`fence`: no `leave` of its own),
    /// not as a lost lock (a `leave` after the pair's newer `join`).
    async fn refresh(&self) {
        if self.may_be_dead() {
            tracing::debug!("heartbeat overdue: the locks wait for the next heartbeat");
            return;
        }
        let _releases_wait = self.refreshing.lock().await;
        let (slots, locks): (Vec<u64>, Vec<Lock>) = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.iter()
                .filter(|(_, h)| !h.holder.is_fenced())
                .map(|(slot, h)| (*slot, h.lock.clone()))
                .unzip()
        };
        if locks.is_empty() {
            return;
        }
        let asked = Instant::now();
        let outcomes = self.manager.refresh(&locks).await;
        if self.may_be_dead() {
            return;
        }
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
/// the queue closes. A release also drops the sessions' registry entries
/// and this edge's records of them (`rill_sessions::lock`).
async fn release_closed(
    manager: LockManager,
    mut queue: mpsc::UnboundedReceiver<Lock>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
) {
    let mut batch = Vec::with_capacity(RELEASE_BATCH);
    while queue.recv_many(&mut batch, RELEASE_BATCH).await > 0 {
        let _refresh_over = refreshing.lock().await;
        manager.release(&batch).await;
        batch.clear();
    }
}

impl Lease {
    pub fn fence(&self) -> u64 {
        self.lock.fence
    }

    /// Whether this edge was declared dead since the lock was taken: the
    /// session then ends without a `leave` (the survivor that declared it
    /// dead publishes it) and without releasing anything.
    pub fn fenced(&self) -> bool {
        self.holder.is_fenced()
    }

    /// Starts refreshing the lock for the hub session `session`; a lock of
    /// an incarnation declared dead meanwhile ends the session at once.
    pub fn hold(&mut self, slot: u64, session: SessionHandle) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        if self.holder.is_fenced() {
            session.end(Disconnect::Reconnect(ReconnectReason::DeclaredDead));
        }
        held.insert(
            slot,
            Held {
                lock: self.lock.clone(),
                session,
                holder: self.holder.clone(),
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
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
            held.remove(&slot);
        }
        if self.holder.is_fenced() {
            return; // the survivor that declared this edge dead frees it
        }
        let lock = self.lock.clone();
        let locks = self.locks.clone();
        self.locks
            .leaving
            .spawn(async move { locks.close(lock).await });
    }
}
