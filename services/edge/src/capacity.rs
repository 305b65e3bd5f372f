//! How many live sessions this edge holds, against `limits.max_connections`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::{EdgeMetrics, Transport};

#[derive(Debug)]
pub struct Capacity {
    live: AtomicUsize,
    max: usize,
    metrics: Arc<EdgeMetrics>,
}

/// A live session's place in the count; dropping it frees the place.
#[derive(Debug)]
pub struct SessionPermit {
    capacity: Arc<Capacity>,
    transport: Transport,
}

impl Capacity {
    pub fn new(max: usize, metrics: Arc<EdgeMetrics>) -> Arc<Self> {
        Arc::new(Self {
            live: AtomicUsize::new(0),
            max,
            metrics,
        })
    }

    /// A permit for one more session, unless the edge is full.
    pub fn try_acquire(self: &Arc<Self>, transport: Transport) -> Option<SessionPermit> {
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        taken.ok()?;
        self.metrics.live_sessions(transport).inc();
        Some(SessionPermit {
            capacity: self.clone(),
            transport,
        })
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.capacity.live.fetch_sub(1, Ordering::AcqRel);
        self.capacity.metrics.live_sessions(self.transport).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_maximum_and_frees_on_drop() {
        let capacity = Capacity::new(2, Arc::new(EdgeMetrics::default()));
        let a = capacity.try_acquire(Transport::Websocket).expect("first");
        let _b = capacity.try_acquire(Transport::Sse).expect("second");
        assert!(capacity.try_acquire(Transport::Sse).is_none());
        drop(a);
        assert_eq!(capacity.live(), 1);
        assert!(capacity.try_acquire(Transport::Websocket).is_some());
    }
}
