//! Token buckets: at most `rate` actions per second on average, and
//! `burst` at once. One bucket per session lives in the session; buckets
//! per key (a user, a client address, an API key) live in a
//! [`KeyedLimiter`], whose size is bounded: past `max_keys`, buckets that
//! are full again (as good as new) are dropped, and if none is, the
//! limiter refuses new keys until some are.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A rate and a burst, as settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Actions per second, on average.
    pub per_second: f64,
    /// Actions at once, after a quiet time.
    pub burst: u32,
}

impl Rate {
    pub fn validate(&self, field: &'static str) -> Result<(), crate::SettingsError> {
        if !(self.per_second > 0.0 && self.per_second.is_finite()) || self.burst == 0 {
            return Err(crate::SettingsError::invalid(
                field,
                "per_second must be above 0 and burst at least 1",
            ));
        }
        Ok(())
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.last = now;
    }

    /// Takes a token, or says how long until there is one.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(missing / self.rate.per_second))
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.rate.burst)
    }
}

/// Token buckets by key, at most `max_keys` of them.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token of `key`'s bucket, or says how long until there is one.
    pub fn try_take(&self, key: &K) -> Result<(), Duration> {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= self.max_keys {
                // Every bucket is in use: a new key waits as one token would.
                return Err(Duration::from_secs_f64(1.0 / self.rate.per_second));
            }
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, now))
            .try_take(now)
    }

    /// How many keys have a bucket now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `Retry-After` in whole seconds (at least 1) for a wait.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_PER_SECOND: Rate = Rate {
        per_second: 2.0,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(TWO_PER_SECOND, start);
        for _ in 0..3 {
            assert!(bucket.try_take(start).is_ok());
        }
        let wait = bucket.try_take(start).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.try_take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.try_take(start + Duration::from_millis(600)).is_err());
        // A long quiet time refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.try_take(later).is_ok());
        }
        assert!(bucket.try_take(later).is_err());
    }

    #[test]
    fn keys_have_buckets_of_their_own_and_their_number_is_bounded() {
        let limiter = KeyedLimiter::new(TWO_PER_SECOND, 2);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.try_take_at(&"a", now).is_ok());
        }
        assert!(limiter.try_take_at(&"a", now).is_err());
        assert!(limiter.try_take_at(&"b", now).is_ok(), "b has its own");
        assert!(
            limiter.try_take_at(&"c", now).is_err(),
            "two keys in use: no room for a third"
        );
        // Once the others are full again, they make room.
        let later = now + Duration::from_secs(10);
        assert!(limiter.try_take_at(&"c", later).is_ok());
        assert!(limiter.len() <= 2);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn rates_are_checked() {
        let zero = Rate {
            per_second: 0.0,
            burst: 1,
        };
        assert!(zero.validate("x").is_err());
        assert!(TWO_PER_SECOND.validate("x").is_ok());
    }
}
