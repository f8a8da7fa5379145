//! A retry budget: retries limited to a fraction of recent requests.
//!
//! Per-call attempt limits are not enough during an outage: if every request
//! is retried three times, a struggling Redis sees four times the load exactly
//! when it can least take it. A budget caps retries across all calls sharing
//! it: every original request earns `ratio` of a retry token, every retry
//! spends a whole one, and tokens expire after `ttl` so that a quiet hour does
//! not bank enough retries to flood the next outage. A small floor of
//! `min_per_sec` retries per second is always allowed, so that a service with
//! little traffic can still retry at all.
//!
//! Tokens live in a ring of [`SLOTS_PER_TTL`] time slots, each `ttl / SLOTS_PER_TTL`
//! wide (at least 1 ms). Expiry therefore happens a slot at a time: a deposit
//! counts for at least `ttl` and at most one slot width longer.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How many slots the ring divides `ttl` into: finer slots expire deposits
/// closer to exactly `ttl`, at the cost of a longer scan on withdrawal.
pub const SLOTS_PER_TTL: usize = 10;

/// One more slot than [`SLOTS_PER_TTL`], so that the oldest slot, partly
/// older than `ttl`, is kept rather than dropped early.
const RING_LEN: usize = SLOTS_PER_TTL + 1;

/// Tokens are counted in millionths, so that adding up fractional deposits
/// (five deposits at ratio 0.2) gives exactly one token, which floats do not
/// promise.
const UNITS_PER_TOKEN: u64 = 1_000_000;

const MIN_SLOT_WIDTH: Duration = Duration::from_millis(1);

const FLOOR_WINDOW: Duration = Duration::from_secs(1);

/// A token bucket that allows retries in proportion to requests.
///
/// Call [`deposit`](Self::deposit) once per original request and
/// [`try_withdraw`](Self::try_withdraw) before each retry; skip the retry when
/// it returns `false`. Share one budget (behind an `Arc`) among all the calls
/// whose retries should be limited together, typically per dependency.
#[derive(Debug)]
pub struct RetryBudget {
    deposit_units: u64,
    min_per_sec: u32,
    ttl: Duration,
    slot_width: Duration,
    origin: Instant,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Unspent token units per slot; slot `g % RING_LEN` holds generation `g`.
    slots: [u64; RING_LEN],
    /// The generation (slot number since `origin`) of the newest slot.
    current: u64,
    /// Sum of `slots`, so that the common "is there a token?" check needs no scan.
    total: u64,
    floor_window_start: Instant,
    floor_used: u32,
}

impl RetryBudget {
    /// A budget that allows `ratio` retries per request, plus `min_per_sec`
    /// retries every second regardless, with deposits expiring after `ttl`.
    ///
    /// A `ttl` shorter than 10 ms is treated as 10 ms. `ratio` is kept to six
    /// decimal places.
    ///
    /// # Panics
    ///
    /// If `ratio` is negative or not finite.
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> Self {
        assert!(
            ratio.is_finite() && ratio >= 0.0,
            "retry budget ratio must be a finite non-negative number, got {ratio}"
        );
        let slot_width = (ttl / SLOTS_PER_TTL as u32).max(MIN_SLOT_WIDTH);
        let now = Instant::now();
        Self {
            // `as` saturates, which is the right answer for absurdly large ratios.
            deposit_units: (ratio * UNITS_PER_TOKEN as f64).round() as u64,
            min_per_sec,
            ttl: slot_width * SLOTS_PER_TTL as u32,
            slot_width,
            origin: now,
            window: Mutex::new(Window {
                slots: [0; RING_LEN],
                current: 0,
                total: 0,
                floor_window_start: now,
                floor_used: 0,
            }),
        }
    }

    /// How long a deposit keeps counting (after rounding up tiny values).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records one original request, earning `ratio` of a retry.
    pub fn deposit(&self) {
        let mut window = self.advanced_window(Instant::now());
        let newest = (window.current % RING_LEN as u64) as usize;
        window.slots[newest] = window.slots[newest].saturating_add(self.deposit_units);
        window.total = window.total.saturating_add(self.deposit_units);
    }

    /// Takes permission for one retry; `false` means the retry should not happen.
    pub fn try_withdraw(&self) -> bool {
        let now = Instant::now();
        let mut window = self.advanced_window(now);

        if now.duration_since(window.floor_window_start) >= FLOOR_WINDOW {
            window.floor_window_start = now;
            window.floor_used = 0;
        }
        // The floor is spent first: unused floor is lost at the end of the
        // second anyway, while earned tokens may still be needed later.
        if window.floor_used < self.min_per_sec {
            window.floor_used += 1;
            return true;
        }

        if window.total < UNITS_PER_TOKEN {
            return false;
        }
        // Spend the oldest tokens first, since they are the next to expire.
        let mut owed = UNITS_PER_TOKEN;
        let newest = (window.current % RING_LEN as u64) as usize;
        for step in 1..=RING_LEN {
            let index = (newest + step) % RING_LEN;
            let taken = window.slots[index].min(owed);
            window.slots[index] -= taken;
            owed -= taken;
            if owed == 0 {
                break;
            }
        }
        window.total -= UNITS_PER_TOKEN;
        true
    }

    /// Locks the window and expires the slots that fell out of it by `now`.
    fn advanced_window(&self, now: Instant) -> MutexGuard<'_, Window> {
        // A poisoned lock only means another thread panicked between plain
        // integer updates; the counts are still usable.
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(self.origin);
        let generation =
            u64::try_from(elapsed.as_nanos() / self.slot_width.as_nanos()).unwrap_or(u64::MAX);
        if generation > window.current {
            let expired = (generation - window.current).min(RING_LEN as u64);
            for step in 1..=expired {
                let index = ((window.current + step) % RING_LEN as u64) as usize;
                window.total -= window.slots[index];
                window.slots[index] = 0;
            }
            window.current = generation;
        }
        window
    }
}

impl Default for RetryBudget {
    /// 20% extra load from retries at most, at least 10 retries a second, and
    /// a 10 s memory: long enough to smooth bursts, short enough to forget a
    /// busy period before the next outage.
    fn default() -> Self {
        Self::new(0.2, 10, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    /// A budget that remembers 10 s, as the default does.
    fn budget_with(ratio: f64, min_per_sec: u32) -> RetryBudget {
        RetryBudget::new(ratio, min_per_sec, Duration::from_secs(10))
    }

    /// One deposit for each of `requests` original requests.
    fn deposit(budget: &RetryBudget, requests: usize) {
        for _ in 0..requests {
            budget.deposit();
        }
    }

    fn withdrawals_allowed(budget: &RetryBudget) -> usize {
        // Bounded so that a broken budget fails the test instead of hanging it.
        (0..100_000).take_while(|_| budget.try_withdraw()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_allowed_in_proportion_to_requests() {
        let budget = budget_with(0.2, 0);
        deposit(&budget, 100);

        assert_eq!(withdrawals_allowed(&budget), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_refuses_retries() {
        let budget = budget_with(0.2, 0);
        deposit(&budget, 4);

        assert!(!budget.try_withdraw());
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_a_few_retries_every_second_without_requests() {
        let budget = budget_with(0.2, 3);

        assert_eq!(withdrawals_allowed(&budget), 3);
        advance(Duration::from_millis(999)).await;
        assert!(!budget.try_withdraw());
        advance(Duration::from_millis(1)).await;
        assert_eq!(withdrawals_allowed(&budget), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_adds_to_the_earned_retries() {
        let budget = budget_with(0.5, 2);
        deposit(&budget, 10);

        assert_eq!(withdrawals_allowed(&budget), 2 + 5);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_older_than_the_ttl_expire() {
        let budget = budget_with(0.5, 0);
        deposit(&budget, 10);

        advance(Duration::from_secs(10)).await;
        assert!(
            budget.try_withdraw(),
            "a deposit exactly ttl old still counts"
        );
        advance(Duration::from_secs(1)).await;
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_expired_deposits_are_lost() {
        let budget = budget_with(1.0, 0);
        deposit(&budget, 4);
        advance(Duration::from_secs(6)).await;
        deposit(&budget, 3);

        advance(Duration::from_secs(5)).await;

        assert_eq!(withdrawals_allowed(&budget), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn withdrawals_spend_the_oldest_tokens_first() {
        let budget = budget_with(1.0, 0);
        budget.deposit();
        advance(Duration::from_secs(6)).await;
        budget.deposit();
        assert!(budget.try_withdraw());

        // Had the newer token been spent, nothing would be left after the old one expires.
        advance(Duration::from_secs(5)).await;

        assert!(budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_idle_period_clears_every_slot() {
        let budget = budget_with(1.0, 0);
        deposit(&budget, 50);

        advance(Duration::from_secs(3600)).await;
        budget.deposit();

        assert_eq!(withdrawals_allowed(&budget), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_allows_one_retry_in_five_plus_ten_a_second() {
        let budget = RetryBudget::default();
        deposit(&budget, 100);

        assert_eq!(withdrawals_allowed(&budget), 10 + 20);
        assert_eq!(budget.ttl(), Duration::from_secs(10));
    }

    #[test]
    #[should_panic(expected = "ratio")]
    fn a_negative_ratio_is_rejected() {
        let _ = RetryBudget::new(-0.1, 0, Duration::from_secs(1));
    }

    #[test]
    fn a_budget_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RetryBudget>();
    }
}
