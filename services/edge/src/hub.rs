//! The hub: which local sessions are on which profile, and delivery of an
//! event to all of them. It knows nothing of WebSocket, SSE or Kafka.
//!
//! Each session has a bounded queue. Delivery never waits: when a session's
//! queue is full the event is dropped for that session, and the session's
//! next event is a `gap` notice telling the client to fetch history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rill_domain::ProfileId;
use tokio::sync::mpsc;

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
    queue: mpsc::Sender<Arc<Outbound>>,
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

    /// Adds a session on `profile` with a queue of `depth` events.
    pub fn subscribe(self: &Arc<Self>, profile: ProfileId, depth: usize) -> Subscription {
        let (queue, rx) = mpsc::channel(depth);
        let slot = Arc::new(Slot {
            id: self.next_slot.fetch_add(1, Ordering::Relaxed),
            queue,
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
        let Some(slots) = profiles.get(&profile) else {
            return 0;
        };
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
    /// The next event for this session: a `gap` notice first if events were
    /// dropped since the last call.
    pub async fn next(&mut self) -> Option<Arc<Outbound>> {
        if self.slot.gap.swap(false, Ordering::AcqRel) {
            return Some(ServerEvent::Gap.to_outbound());
        }
        self.rx.recv().await
    }
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

    fn event() -> Arc<Outbound> {
        ServerEvent::Pong.to_outbound()
    }

    #[tokio::test]
    async fn delivers_only_to_sessions_on_the_profile() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let (a, b) = (ProfileId::random(), ProfileId::random());
        let mut on_a = hub.subscribe(a, 4);
        let mut on_b = hub.subscribe(b, 4);
        assert_eq!(hub.deliver(a, &event()), 1);
        assert_eq!(on_a.next().await.map(|o| o.name), Some("pong"));
        assert!(on_b.rx.try_recv().is_err(), "b must not get a's event");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_then_reports_a_gap() {
        let metrics = Arc::new(EdgeMetrics::default());
        let hub = Hub::new(metrics.clone());
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, 2);
        for _ in 0..5 {
            hub.deliver(p, &event());
        }
        assert_eq!(metrics.dropped_events.get(), 3);
        assert_eq!(sub.next().await.map(|o| o.name), Some("gap"));
        assert_eq!(sub.next().await.map(|o| o.name), Some("pong"));
        assert_eq!(sub.next().await.map(|o| o.name), Some("pong"));
        assert!(sub.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = Hub::new(Arc::new(EdgeMetrics::default()));
        let p = ProfileId::random();
        let sub = hub.subscribe(p, 1);
        assert_eq!(hub.sessions_on(p), 1);
        drop(sub);
        assert_eq!(hub.sessions_on(p), 0);
        assert_eq!(hub.deliver(p, &event()), 0);
    }
}
