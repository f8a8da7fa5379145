//! Exponential backoff with full jitter.
//!
//! Clients that fail together would retry together if they all waited the
//! same time, hitting a recovering Redis in synchronised waves. "Full jitter"
//! (a uniform random wait between zero and an exponentially growing ceiling)
//! spreads them out, at the cost of sometimes retrying almost at once.

use std::time::Duration;

/// How long to wait before retrying, as a function of the attempt number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling for attempt 0; it doubles with every further attempt.
    pub base: Duration,
    /// The ceiling never grows past this.
    pub max: Duration,
}

impl Backoff {
    /// A backoff whose ceiling starts at `base` and is capped at `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The longest wait after attempt `attempt` (0-based): `min(max, base * 2^attempt)`.
    ///
    /// Saturates at `max` instead of overflowing, however large `attempt` is.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // Without this, a zero base would jump to `max` once `2^attempt` overflows.
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        1u32.checked_shl(attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |grown| grown.min(self.max))
    }

    /// A random wait, uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        match u64::try_from(ceiling.as_nanos()) {
            Ok(nanos) => Duration::from_nanos(fastrand::u64(0..=nanos)),
            // Ceilings beyond ~584 years lose nanosecond resolution; nobody will notice.
            Err(_) => ceiling.mul_f64(fastrand::f64()),
        }
    }
}

impl Default for Backoff {
    /// 50 ms doubling up to 5 s: the first retries are quick enough to hide a
    /// blip, and the cap keeps a caller from sleeping through a recovery.
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_with_each_attempt() {
        let backoff = Backoff::new(10 * MS, Duration::from_secs(60));

        let ceilings: Vec<_> = (0..5).map(|a| backoff.ceiling(a)).collect();

        assert_eq!(ceilings, [10 * MS, 20 * MS, 40 * MS, 80 * MS, 160 * MS]);
    }

    #[test]
    fn the_ceiling_is_capped_at_max() {
        let backoff = Backoff::new(10 * MS, 100 * MS);

        assert_eq!(backoff.ceiling(3), 80 * MS);
        assert_eq!(backoff.ceiling(4), 100 * MS);
        assert_eq!(backoff.ceiling(20), 100 * MS);
    }

    #[test]
    fn huge_attempt_numbers_saturate_instead_of_overflowing() {
        let backoff = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);

        assert_eq!(backoff.ceiling(1), Duration::from_secs(u64::MAX / 2 * 2));
        assert_eq!(backoff.ceiling(2), Duration::MAX);
        assert_eq!(backoff.ceiling(31), Duration::MAX);
        assert_eq!(backoff.ceiling(32), Duration::MAX);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::MAX);
        assert_eq!(Backoff::default().ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn a_zero_base_never_waits() {
        let backoff = Backoff::new(Duration::ZERO, Duration::from_secs(1));

        assert_eq!(backoff.ceiling(40), Duration::ZERO);
        assert_eq!(backoff.delay(40), Duration::ZERO);
    }

    #[test]
    fn jittered_delays_stay_within_the_ceiling_and_spread_across_it() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(10));
        let ceiling = backoff.ceiling(3);
        let samples: Vec<Duration> = (0..10_000).map(|_| backoff.delay(3)).collect();

        assert!(samples.iter().all(|d| *d <= ceiling));
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let half = ceiling / 2;
        // Standard error of the mean is ~0.3% of the ceiling; 5% is far outside noise.
        assert!(
            mean.abs_diff(half) < ceiling / 20,
            "mean {mean:?}, expected ~{half:?}"
        );
        assert!(samples.iter().any(|d| *d < ceiling / 10));
        assert!(samples.iter().any(|d| *d > ceiling * 9 / 10));
    }

    #[test]
    fn the_default_starts_at_50_ms_and_caps_at_5_s() {
        let backoff = Backoff::default();

        assert_eq!(backoff.ceiling(0), 50 * MS);
        assert_eq!(backoff.max, Duration::from_secs(5));
    }
}
