//! What one caller may open on this edge: streams started per second, per
//! client address (before the caller is known) and per user (token
//! buckets), and live sessions per client address (a count). Every limit
//! is this edge's own: the cluster allows it once per edge (documented in
//! the settings and docs/ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rill_domain::UserId;
use rill_runtime::rate_limit::KeyedLimiter;

use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::settings::Limits;
use crate::transport::address::ClientAddress;

#[derive(Debug)]
pub struct OpenLimits {
    /// `limits.opens_per_user`.
    per_user: KeyedLimiter<UserId>,
    /// `limits.opens_per_address`.
    per_address: KeyedLimiter<ClientAddress>,
    sessions: Arc<SessionsByAddress>,
    metrics: Arc<EdgeMetrics>,
}

/// Live sessions by client address; an address has an entry only while it
/// has sessions (or opens in progress), so there are at most as many
/// entries as open connections, and at most `max_connections`.
#[derive(Debug)]
struct SessionsByAddress {
    /// `limits.max_sessions_per_address`.
    max_per_address: usize,
    /// `limits.max_connections`.
    max_addresses: usize,
    counts: Mutex<HashMap<ClientAddress, usize>>,
}

/// One session's place in its address's count; dropping it frees the
/// place. Held by the transport for as long as the session lives.
#[derive(Debug)]
pub struct AddressPermit {
    sessions: Arc<SessionsByAddress>,
    address: ClientAddress,
}

impl OpenLimits {
    pub fn new(limits: &Limits, metrics: Arc<EdgeMetrics>) -> Self {
        Self {
            per_user: KeyedLimiter::new(limits.opens_per_user, limits.max_rate_limited_users),
            per_address: KeyedLimiter::new(
                limits.opens_per_address,
                limits.max_rate_limited_addresses,
            ),
            sessions: Arc::new(SessionsByAddress {
                max_per_address: limits.max_sessions_per_address,
                max_addresses: limits.max_connections,
                counts: Mutex::default(),
            }),
            metrics,
        }
    }

    /// Takes a token of `address`'s bucket: every stream started, whoever
    /// asks and whether it opens or not.
    pub fn address_may_open(&self, address: ClientAddress) -> Result<(), EdgeError> {
        self.per_address.try_take(&address).map_err(|wait| {
            self.metrics.session_refused("opens_per_address");
            tracing::info!(address = %address, wait_ms = wait.as_millis() as u64, "stream refused: too many opens from this address");
            EdgeError::TooManyOpens(wait)
        })
    }

    /// Takes a token of `user`'s bucket.
    pub fn user_may_open(&self, user: UserId) -> Result<(), EdgeError> {
        self.per_user.try_take(&user).map_err(|wait| {
            self.metrics.session_refused("opens_per_user");
            tracing::info!(user_id = %user, wait_ms = wait.as_millis() as u64, "stream refused: too many opens by this user");
            EdgeError::TooManyOpens(wait)
        })
    }

    /// A place for one more session from `address`, unless it has
    /// `max_sessions_per_address` already.
    pub fn hold_session(&self, address: ClientAddress) -> Result<AddressPermit, EdgeError> {
        let sessions = &self.sessions;
        let mut counts = sessions.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = match counts.get(&address) {
            Some(count) => *count >= sessions.max_per_address,
            None => counts.len() >= sessions.max_addresses,
        };
        if full {
            drop(counts);
            self.metrics.session_refused("sessions_per_address");
            tracing::info!(address = %address, max = sessions.max_per_address, "stream refused: too many sessions from this address");
            return Err(EdgeError::TooManySessions {
                max: sessions.max_per_address,
            });
        }
        *counts.entry(address).or_default() += 1;
        Ok(AddressPermit {
            sessions: sessions.clone(),
            address,
        })
    }

    /// Addresses with sessions now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.sessions
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut counts = self
            .sessions
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_runtime::rate_limit::Rate;

    fn limits() -> OpenLimits {
        let limits = Limits {
            opens_per_user: Rate {
                per_second: 0.001,
                burst: 2,
            },
            opens_per_address: Rate {
                per_second: 0.001,
                burst: 3,
            },
            max_sessions_per_address: 2,
            ..Limits::default()
        };
        OpenLimits::new(&limits, Arc::new(EdgeMetrics::default()))
    }

    fn address(last: u8) -> ClientAddress {
        ClientAddress::new([192, 0, 2, last].into())
    }

    #[test]
    fn opens_are_limited_per_address_and_per_user_apart() {
        let limits = limits();
        for _ in 0..3 {
            assert!(limits.address_may_open(address(1)).is_ok());
        }
        assert!(matches!(
            limits.address_may_open(address(1)),
            Err(EdgeError::TooManyOpens(_))
        ));
        assert!(
            limits.address_may_open(address(2)).is_ok(),
            "its own bucket"
        );
        let (ada, bob) = (UserId::random(), UserId::random());
        for _ in 0..2 {
            assert!(limits.user_may_open(ada).is_ok());
        }
        assert!(limits.user_may_open(ada).is_err());
        assert!(limits.user_may_open(bob).is_ok());
    }

    #[test]
    fn sessions_per_address_are_counted_until_they_end() {
        let limits = limits();
        let first = limits.hold_session(address(1)).expect("first");
        let _second = limits.hold_session(address(1)).expect("second");
        assert!(matches!(
            limits.hold_session(address(1)),
            Err(EdgeError::TooManySessions { max: 2 })
        ));
        let other = limits.hold_session(address(2)).expect("another address");
        drop(first);
        let _third = limits.hold_session(address(1)).expect("a place freed");
        drop(other);
        assert_eq!(
            limits.addresses(),
            1,
            "an address without sessions is forgotten"
        );
    }
}
