//! Absolute deadlines as unix milliseconds.
//!
//! A deadline crosses process boundaries inside a stream entry, so it is wall
//! clock time, not a monotonic instant. Each process converts it to its own
//! monotonic clock once ([`Deadline::remaining`]) and waits on that.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The moment after which nobody wants the answer any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    unix_ms: u64,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Deadline {
    /// The deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self {
            unix_ms: now_unix_ms().saturating_add(timeout.as_millis() as u64),
        }
    }

    /// A deadline at the given unix time in milliseconds.
    pub fn from_unix_ms(unix_ms: u64) -> Self {
        Self { unix_ms }
    }

    /// Unix time in milliseconds.
    pub fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    /// Time left, zero once past.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.unix_ms.saturating_sub(now_unix_ms()))
    }

    /// Whether the deadline has passed.
    pub fn is_past(&self) -> bool {
        now_unix_ms() >= self.unix_ms
    }

    /// Current unix time in milliseconds, the clock deadlines are read on.
    pub fn now_unix_ms() -> u64 {
        now_unix_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_future_has_time_left() {
        let d = Deadline::after(Duration::from_secs(5));
        assert!(!d.is_past());
        assert!(d.remaining() > Duration::from_secs(4));
    }

    #[test]
    fn a_deadline_in_the_past_has_none_left() {
        let d = Deadline::from_unix_ms(1);
        assert!(d.is_past());
        assert_eq!(d.remaining(), Duration::ZERO);
    }
}
