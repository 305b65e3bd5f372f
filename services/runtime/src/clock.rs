//! The wall clock, as Rill writes it into records and Redis: milliseconds
//! since the Unix epoch. (Durations and deadlines use the monotonic
//! `Instant`; this is only for times other processes read.)

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_is_past_2025() {
        assert!(super::now_ms() > 1_735_689_600_000);
    }
}
