//! How many live sessions this edge holds, against `limits.max_connections`,
//! and the open-file limit that caps them too (each session is a socket).

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

/// Descriptors an edge needs besides its sessions' sockets: the listener,
/// Kafka and Redis connections, the store, and connections still opening.
pub const OTHER_FILES: u64 = 500;

/// Raises this process's soft limit of open files to its hard limit (as Go
/// programs do at start) and returns the limit in force, if known.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %err, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Why `max_connections` cannot be reached under an open-file limit of
/// `limit` (`None`: unlimited), if it cannot: past the limit, accepting a
/// connection fails ("Too many open files") whatever the setting says.
pub fn open_files_shortfall(max_connections: usize, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let needed = max_connections as u64 + OTHER_FILES;
    (needed > limit).then(|| {
        format!(
            "limits.max_connections is {max_connections} but this process may open only \
             {limit} files ({OTHER_FILES} of them kept for other than sessions): raise the \
             open-file limit (ulimit -n, LimitNOFILE) or lower limits.max_connections to {}",
            limit.saturating_sub(OTHER_FILES)
        )
    })
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

    #[test]
    fn max_connections_must_fit_under_the_open_file_limit() {
        assert_eq!(open_files_shortfall(10_000, None), None, "unlimited");
        assert_eq!(open_files_shortfall(19_500, Some(20_000)), None);
        let why = open_files_shortfall(10_000, Some(1024)).expect("does not fit");
        assert!(
            why.contains("limits.max_connections") && why.ends_with("to 524"),
            "{why}"
        );
    }

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let limit = raise_open_files_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(limit, now.current);
    }
}
