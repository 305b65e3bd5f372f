//! The edges watch each other: each writes a heartbeat to Redis every
//! `edges.heartbeat_interval_ms` and, as often, looks for an edge whose
//! heartbeat is older than `edges.dead_after_ms`. One survivor claims
//! such an edge (`rill_sessions::Edges::claim`) and ends its sessions for
//! it, as their close path would have: for each session whose lock is
//! still the dead edge's (or expired, with no newer session), the `leave`
//! goes to Kafka first, then the lock and the registry entries go, so that
//! the pair's next session joins after the leave. A session whose pair a
//! newer session holds is left alone. A killed edge's sessions are so
//! ended within `dead_after_ms + heartbeat_interval_ms` (and the time the
//! ending takes: a few Redis calls per 250 sessions, and the leaves' acks).
//!
//! An edge that was only paused (or cut off from Redis) finds the `dead`
//! mark with its next heartbeat, or notices by itself that it has not
//! beaten for a whole session TTL; it then goes on as a new incarnation
//! and ends the old one's sessions with `reconnect` (`SessionLocks::fence`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rill_domain::PresenceChange;
use rill_runtime::clock::now_ms;
use rill_runtime::shutdown::CancellationToken;
use rill_sessions::{Beat, Edges, Incarnation, Lock, LockManager, Refresh};
use tokio::time::{Instant, MissedTickBehavior};

use crate::session::SessionLocks;
use crate::to_kafka::Publisher;

/// Sessions of a dead edge ended per step (take over, leaves, release).
const END_BATCH: usize = 500;

/// This edge's heartbeat, and its watch over the others.
#[derive(Debug)]
pub struct Peers {
    edges: Edges,
    manager: LockManager,
    locks: Arc<SessionLocks>,
    publisher: Arc<Publisher>,
    interval: Duration,
    /// `redis.session_ttl_secs`: past this without a heartbeat, this edge's
    /// locks are gone whoever noticed.
    session_ttl: Duration,
}

impl Peers {
    pub fn new(
        edges: Edges,
        manager: LockManager,
        locks: Arc<SessionLocks>,
        publisher: Arc<Publisher>,
        interval: Duration,
    ) -> Self {
        let session_ttl = manager.ttl();
        Self {
            edges,
            manager,
            locks,
            publisher,
            interval,
            session_ttl,
        }
    }

    /// One heartbeat, so that the edge is known before it takes sessions.
    pub async fn first_beat(&self) {
        let me = self.locks.incarnation();
        let asked = Instant::now();
        if self.edges.beat(&me).await == Beat::Alive {
            self.locks.beat_taken(asked);
        } else {
            tracing::warn!(edge = %me, "the first heartbeat did not reach a majority of Redis servers");
        }
    }

    /// Beats until `stop`.
    pub async fn beat(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let asked = Instant::now();
            // Silent for a whole TTL (paused, cut off): its locks are gone,
            // and the `dead` mark may be too; it must not go on as if not.
            if asked.duration_since(self.locks.last_beat()) >= self.session_ttl {
                self.fence("no heartbeat for a whole session TTL");
                self.locks.beat_taken(asked);
            }
            let me = self.locks.incarnation();
            match self.edges.beat(&me).await {
                Beat::Alive => self.locks.beat_taken(asked),
                Beat::DeclaredDead => {
                    self.fence("declared dead by another edge");
                    tick.reset_immediately();
                }
                Beat::Unknown => {
                    tracing::debug!(edge = %me, "heartbeat: too few Redis servers answered");
                }
            }
        }
    }

    fn fence(&self, why: &str) {
        let (old, sessions) = self.locks.fence();
        tracing::warn!(
            edge = %old,
            next = %self.locks.incarnation(),
            sessions,
            why,
            "this edge may have been taken for dead (paused, or cut off from Redis): its sessions end with reconnect; it goes on as a new incarnation"
        );
    }

    /// Looks for dead edges every heartbeat interval, and ends the sessions
    /// of those this edge claims, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = self.locks.incarnation();
            let silent = match self.edges.silent(&me).await {
                Ok(silent) => silent,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot look at the other edges' heartbeats");
                    continue;
                }
            };
            for dead in silent {
                if self.edges.claim(&dead, &me).await {
                    self.end_sessions_of(&dead, &me).await;
                }
            }
        }
    }

    /// Ends the sessions of `dead` (claimed by `me`) as their close path
    /// would have; forgets it once none is left in doubt.
    async fn end_sessions_of(&self, dead: &Incarnation, me: &Incarnation) {
        let started = Instant::now();
        let sessions = match self.edges.sessions_of(dead).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(edge = %dead, error = %err, "cannot read a dead edge's sessions: trying again later");
                self.edges.unclaim(dead, me).await;
                return;
            }
        };
        let mut tally = Tally::default();
        for batch in sessions.chunks(END_BATCH) {
            tally.add(self.end_batch(batch).await);
        }
        if tally.unsure == 0 {
            self.edges.forget(dead, me).await;
        } else {
            // The others end on a later look, by this edge or another.
            self.edges.unclaim(dead, me).await;
        }
        tracing::info!(
            edge = %dead,
            sessions = sessions.len(),
            ended = tally.ended,
            newer = tally.newer,
            unsure = tally.unsure,
            took_ms = started.elapsed().as_millis() as u64,
            "an edge was declared dead: its sessions were ended for it"
        );
    }

    /// Holds the locks still the dead edge's, publishes their leaves, then
    /// frees them with their registry entries and records.
    async fn end_batch(&self, batch: &[Lock]) -> Tally {
        let outcomes = self.manager.take_over(batch).await;
        let mut tally = Tally::default();
        let mut leaves = Vec::new();
        let mut held = Vec::new();
        let mut release = Vec::new();
        for (lock, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Refresh::Held => {
                    tally.ended += 1;
                    leaves.push(self.publisher.presence(PresenceChange {
                        user: lock.user,
                        profile: lock.profile,
                        joined: false,
                        fence: lock.fence,
                        at_ms: now_ms(),
                    }));
                    held.push(lock.clone());
                    release.push(lock.clone());
                }
                // A newer session has the pair: only the dead edge's own
                // traces go (its record; its token where it still is).
                Refresh::Lost => {
                    tally.newer += 1;
                    release.push(lock.clone());
                }
                Refresh::Unknown => tally.unsure += 1,
            }
        }
        // The leaves wait for the broker if it is away (they are sent
        // until Kafka has them): the locks are held again every third of
        // their TTL meanwhile, so that no pair's next session joins before
        // its leave.
        let leaves = join_all(leaves);
        tokio::pin!(leaves);
        let mut hold = tokio::time::interval(self.session_ttl / 3);
        hold.tick().await; // at once: `take_over` just held them
        loop {
            tokio::select! {
                _ = &mut leaves => break,
                _ = hold.tick() => {
                    self.manager.take_over(&held).await;
                }
            }
        }
        self.manager.release(&release).await;
        tally
    }

    /// A clean stop, once every lock was released: the heartbeat goes, and
    /// nobody needs to reap this edge.
    pub async fn retire(&self) {
        self.edges.retire(&self.locks.incarnation()).await;
    }
}

/// What ending a dead edge's sessions did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Leave published, lock and entries freed.
    ended: usize,
    /// A newer session holds the pair: left alone.
    newer: usize,
    /// Too few Redis servers answered: tried again later.
    unsure: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ended += other.ended;
        self.newer += other.newer;
        self.unsure += other.unsure;
    }
}
