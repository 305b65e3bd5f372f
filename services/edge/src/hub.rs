//! The hub: which local sessions are on which profile, and delivery of an
//! event to all of them. It knows nothing of WebSocket, SSE or Kafka.
//!
//! Each session has a bounded queue. Delivery never waits: when a session's
//! queue is full the event is dropped for that session, and the session's
//! next event is a `gap` notice telling the client to fetch history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rill_domain::{ProfileId, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Outbound, ServerEvent};
use crate::metrics::EdgeMetrics;

/// The local sessions of this edge, by profile.
#[derive(Debug)]
pub struct Hub {
    profiles: RwLock<HashMap<ProfileId, Vec<Arc<Slot>>>>,
    next_slot: AtomicU64,
    metrics: Arc<EdgeMetrics>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    user: UserId,
    queue: mpsc::Sender<Arc<Outbound>>,
    /// Cancelled when the session must end (its user was unbound).
    evicted: CancellationToken,
    /// Set when an event was dropped for this session.
    gap: AtomicBool,
}

impl Hub {
    pub fn new(metrics: Arc<EdgeMetrics>) -> Arc<Self> {
        Arc::new(Self {
            profiles: RwLock::default(),
            next_slot: AtomicU64::new(0),
            metrics,
        })
    }

    /// Adds a session of `user` on `profile` with a queue of `depth` events.
    pub fn subscribe(
        self: &Arc<Self>,
        profile: ProfileId,
        user: UserId,
        depth: usize,
    ) -> Subscription {
        let (queue, rx) = mpsc::channel(depth);
        let slot = Arc::new(Slot {
            id: self.next_slot.fetch_add(1, Ordering::Relaxed),
            user,
            queue,
            evicted: CancellationToken::new(),
            gap: AtomicBool::new(false),
        });
        let mut profiles = self.profiles.write().unwrap_or_else(|e| e.into_inner());
        profiles.entry(profile).or_default().push(slot.clone());
        Subscription {
            hub: self.clone(),
            profile,
            slot,
            rx,
        }
    }

    /// Queues `event` for every session on `profile`; returns how many
    /// sessions it was queued for.
    pub fn deliver(&self, profile: ProfileId, event: &Arc<Outbound>) -> usize {
        let profiles = self.profiles.read().unwrap_or_else(|e| e.into_inner());
        let slots = profiles.get(&profile).into_iter().flatten();
        self.offer(slots, event)
    }

    /// Queues `event` for every session of `user`, on any profile; returns
    /// how many sessions it was queued for.
    pub fn deliver_to_user(&self, user: UserId, event: &Arc<Outbound>) -> usize {
        let profiles = self.profiles.read().unwrap_or_else(|e| e.into_inner());
        let slots = profiles.values().flatten().filter(|s| s.user == user);
        self.offer(slots, event)
    }

    /// Queues `event` for each of `slots` without waiting: a full queue
    /// drops it for that session and marks the gap.
    fn offer<'a>(
        &self,
        slots: impl Iterator<Item = &'a Arc<Slot>>,
        event: &Arc<Outbound>,
    ) -> usize {
        let mut queued = 0;
        for slot in slots {
            match slot.queue.try_send(event.clone()) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.gap.store(true, Ordering::Release);
                    self.metrics.dropped_events.inc();
                }
                // The session is ending and will unsubscribe.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.metrics.queued_events.inc_by(queued as u64);
        queued
    }

    /// The (user, profile) pair of every local session.
    pub fn pairs(&self) -> Vec<(UserId, ProfileId)> {
        let profiles = self.profiles.read().unwrap_or_else(|e| e.into_inner());
        profiles
            .iter()
            .flat_map(|(p, slots)| slots.iter().map(move |s| (s.user, *p)))
            .collect()
    }

    /// Ends the sessions for which `matches(user, profile)` holds; returns
    /// how many.
    pub fn evict(&self, matches: impl Fn(UserId, ProfileId) -> bool) -> usize {
        let profiles = self.profiles.read().unwrap_or_else(|e| e.into_inner());
        let mut evicted = 0;
        for (profile, slots) in profiles.iter() {
            for slot in slots.iter().filter(|s| matches(s.user, *profile)) {
                slot.evicted.cancel();
                evicted += 1;
            }
        }
        evicted
    }

    /// Number of sessions on `profile`.
    pub fn sessions_on(&self, profile: ProfileId) -> usize {
        let profiles = self.profiles.read().unwrap_or_else(|e| e.into_inner());
        profiles.get(&profile).map_or(0, Vec::len)
    }

    fn unsubscribe(&self, profile: ProfileId, slot_id: u64) {
        let mut profiles = self.profiles.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = profiles.get_mut(&profile) {
            slots.retain(|s| s.id != slot_id);
            if slots.is_empty() {
                profiles.remove(&profile);
            }
        }
    }
}

/// One session's place in the hub; leaving it (drop) unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    profile: ProfileId,
    slot: Arc<Slot>,
    rx: mpsc::Receiver<Arc<Outbound>>,
}

impl Subscription {
    /// The next thing for this session: a `gap` notice first if events were
    /// dropped since the last call, then queued events; `Evicted` once the
    /// session must end because its user is no longer a member.
    pub async fn next(&mut self) -> Next {
        if self.slot.evicted.is_cancelled() {
            return Next::Evicted;
        }
        if self.slot.gap.swap(false, Ordering::AcqRel) {
            return Next::Event(ServerEvent::Gap.to_outbound());
        }
        tokio::select! {
            _ = self.slot.evicted.cancelled() => Next::Evicted,
            event = self.rx.recv() => match event {
                Some(event) => Next::Event(event),
                // The hub holds the sender while subscribed: not reached.
                None => Next::Evicted,
            },
        }
    }
}

/// What a session gets from the hub.
#[derive(Debug)]
pub enum Next {
    Event(Arc<Outbound>),
    /// The session must end: its user was unbound from the profile, or the
    /// user or the profile was deleted.
    Evicted,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.profile, self.slot.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServerEvent;

    fn name(next: Next) -> &'static str {
        match next {
            Next::Event(out) => out.name,
            Next::Evicted => "evicted",
        }
    }

    fn event() -> Arc<Outbound> {
        ServerEvent::Pong.to_outbound()
    }

    #[tokio::test]
    async fn delivers_only_to_sessions_on_the_profile() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let (a, b) = (ProfileId::random(), ProfileId::random());
        let mut on_a = hub.subscribe(a, UserId::random(), 4);
        let mut on_b = hub.subscribe(b, UserId::random(), 4);
        assert_eq!(hub.deliver(a, &event()), 1);
        assert_eq!(name(on_a.next().await), "pong");
        assert!(on_b.rx.try_recv().is_err(), "b must not get a's event");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_then_reports_a_gap() {
        let metrics = Arc::new(EdgeMetrics::default());
        let hub = Hub::new(metrics.clone());
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 2);
        for _ in 0..5 {
            hub.deliver(p, &event());
        }
        assert_eq!(metrics.dropped_events.get(), 3);
        assert_eq!(name(sub.next().await), "gap");
        assert_eq!(name(sub.next().await), "pong");
        assert_eq!(name(sub.next().await), "pong");
        assert!(sub.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn eviction_ends_only_the_matching_sessions() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let (ada, bob) = (UserId::random(), UserId::random());
        let mut ada_on_p = hub.subscribe(p, ada, 1);
        let ada_on_q = hub.subscribe(q, ada, 1);
        let bob_on_p = hub.subscribe(p, bob, 1);
        assert_eq!(hub.evict(|u, pr| u == ada && pr == p), 1);
        assert!(matches!(ada_on_p.next().await, Next::Evicted));
        assert!(!ada_on_q.slot.evicted.is_cancelled());
        assert!(!bob_on_p.slot.evicted.is_cancelled());
    }

    #[tokio::test]
    async fn delivery_to_a_user_reaches_all_their_sessions_only() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let (ada, bob) = (UserId::random(), UserId::random());
        let mut ada_p = hub.subscribe(p, ada, 2);
        let mut ada_q = hub.subscribe(q, ada, 2);
        let bob_p = hub.subscribe(p, bob, 2);
        assert_eq!(hub.deliver_to_user(ada, &event()), 2);
        assert_eq!(name(ada_p.next().await), "pong");
        assert_eq!(name(ada_q.next().await), "pong");
        assert!(bob_p.rx.is_empty());
        let mut pairs = hub.pairs();
        pairs.sort();
        let mut expected = vec![(ada, p), (ada, q), (bob, p)];
        expected.sort();
        assert_eq!(pairs, expected);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let p = ProfileId::random();
        let sub = hub.subscribe(p, UserId::random(), 1);
        assert_eq!(hub.sessions_on(p), 1);
        drop(sub);
        assert_eq!(hub.sessions_on(p), 0);
        assert_eq!(hub.deliver(p, &event()), 0);
    }
}
