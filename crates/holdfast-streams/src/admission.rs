//! Deadline-aware admission: a request that cannot be answered before its
//! deadline is refused at once rather than queued to time out.
//!
//! The caller reads each watched topic's figures every `backlog_refresh`
//! (200 ms): the entries not yet delivered to any worker (the group's lag)
//! and how many the group has been delivered in all (`entries-read`). From
//! two readings it learns the topic's drain rate, but only over intervals
//! when entries were waiting at both ends: then every worker terminal was
//! busy, and what was delivered is what the workers can take. While the
//! queue is empty, deliveries follow arrivals, which says nothing about
//! capacity, so the last rate learnt under load is kept.
//!
//! A new request waits behind the lag: `lag / rate`. Between readings the
//! lag is carried forward with this caller's own enqueues and the rate's
//! drain. When that wait is longer than what is left of the request's
//! deadline, the request is refused with `503 overloaded` and a
//! `Retry-After`. Before any rate is known the caller admits everything
//! (the backlog limit still applies).
//!
//! A call (request/reply) is also held to a queue wait of its own
//! (`max_queue_wait`, 500 ms unless configured), whatever its deadline: a
//! caller waiting on the line gains nothing from a standing queue but
//! latency, and a short one keeps the workers just as busy while it drains
//! in a moment once an overload ends. Jobs, which are meant to wait,
//! are held to their deadline alone.

use std::time::Duration;

use tokio::time::Instant;

/// Fewer waiting entries than this at both ends of an interval do not
/// prove that every terminal was busy (a reader may simply not have come
/// round yet), so such an interval teaches no rate.
pub(crate) const MIN_SATURATED_LAG: u64 = 32;

/// Weight of the newest interval in the rate.
const NEWEST_WEIGHT: f64 = 0.5;

/// The share of a request's remaining deadline it may spend waiting for a
/// worker: the rest is for its handling, the reply's way back and the
/// error of an estimate that is up to one reading old.
pub(crate) const WAIT_SHARE: f64 = 0.8;

/// What a caller knows of one topic's queue.
#[derive(Debug, Default)]
pub(crate) struct DrainEstimate {
    /// Entries not yet delivered, at the last reading.
    lag: u64,
    /// Entries delivered to the group in all, at the last reading.
    delivered: Option<u64>,
    /// When the last reading was taken.
    read_at: Option<Instant>,
    /// Entries the workers take per second, learnt under load.
    rate: Option<f64>,
    /// Requests this caller queued since the last reading.
    enqueued_since: u64,
}

impl DrainEstimate {
    /// A new reading of the topic: `lag` entries waiting, `delivered` in
    /// all (`None` when the server does not say).
    pub(crate) fn observe(&mut self, lag: u64, delivered: Option<u64>, now: Instant) {
        if let (Some(before), Some(after), Some(at)) = (self.delivered, delivered, self.read_at) {
            let seconds = now.saturating_duration_since(at).as_secs_f64();
            let saturated = self.lag >= MIN_SATURATED_LAG && lag >= MIN_SATURATED_LAG;
            // A count that went down is a group made again: no sample.
            if saturated && after >= before && seconds > 0.0 {
                let sample = (after - before) as f64 / seconds;
                self.rate = Some(match self.rate {
                    Some(rate) => rate * (1.0 - NEWEST_WEIGHT) + sample * NEWEST_WEIGHT,
                    None => sample,
                });
            }
        }
        self.lag = lag;
        self.delivered = delivered;
        self.read_at = Some(now);
        self.enqueued_since = 0;
    }

    /// This caller queued one more request.
    pub(crate) fn enqueued(&mut self) {
        self.enqueued_since += 1;
    }

    /// The rate learnt under load, entries per second.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// How long a request queued now would wait before a worker takes it;
    /// `None` while no rate is known.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        let rate = self.rate?;
        let since = self
            .read_at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        let ahead = (self.lag + self.enqueued_since) as f64 - rate * since;
        // A handful ahead is the queue keeping up, whatever the last rate
        // learnt: this also ends a stall's refusals once the queue drains.
        if ahead < MIN_SATURATED_LAG as f64 {
            return Some(Duration::ZERO);
        }
        if rate <= 0.0 {
            // Entries wait and nothing drains: the workers are stalled.
            return Some(Duration::MAX);
        }
        Some(Duration::from_secs_f64((ahead / rate).min(86_400.0)))
    }
}

/// Whether a request with `remaining` before its deadline may be queued
/// behind a wait of `wait`: at most [`WAIT_SHARE`] of it, and at most
/// `cap` when there is one; when not, how long until it might be.
pub(crate) fn admit(
    wait: Option<Duration>,
    remaining: Duration,
    cap: Option<Duration>,
) -> Result<(), Refusal> {
    let allowed = match cap {
        Some(cap) => remaining.mul_f64(WAIT_SHARE).min(cap),
        None => remaining.mul_f64(WAIT_SHARE),
    };
    match wait {
        Some(wait) if wait > allowed => Err(Refusal {
            wait,
            remaining,
            allowed,
            // Once the queue has drained to what would be admitted.
            retry_after: wait
                .saturating_sub(allowed)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }),
        _ => Ok(()),
    }
}

/// A request refused because it could not be answered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The wait the request would have had before a worker took it.
    pub wait: Duration,
    /// What was left of its deadline.
    pub remaining: Duration,
    /// The longest wait it could have been queued behind: a share of what
    /// was left of its deadline, or a call's queue-wait cap when shorter.
    pub allowed: Duration,
    /// When a retry might be admitted.
    pub retry_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn nothing_is_refused_before_a_rate_is_learnt_under_load() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        assert_eq!(queue.wait(start), None);
        // Light traffic: the queue is empty at each reading, deliveries
        // follow arrivals and teach nothing about capacity.
        queue.observe(0, Some(0), start);
        queue.observe(2, Some(10), at(start, 200));
        queue.observe(0, Some(20), at(start, 400));
        assert_eq!(queue.rate(), None);
        assert_eq!(
            admit(queue.wait(at(start, 400)), Duration::from_millis(1), None),
            Ok(())
        );
    }

    #[test]
    fn the_rate_is_learnt_while_entries_wait_and_the_wait_follows_from_it() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        queue.observe(500, Some(1_000), start);
        // 40 delivered in 200 ms with entries waiting throughout: 200/s.
        queue.observe(600, Some(1_040), at(start, 200));
        assert_eq!(queue.rate(), Some(200.0));
        // 600 ahead at 200/s: 3 s.
        assert_eq!(queue.wait(at(start, 200)), Some(Duration::from_secs(3)));
        // 100 ms later 20 more have drained; this caller queued 10.
        for _ in 0..10 {
            queue.enqueued();
        }
        assert_eq!(
            queue.wait(at(start, 300)),
            Some(Duration::from_secs_f64(590.0 / 200.0))
        );
        // The next interval delivers 60 in 200 ms (300/s): the rate moves
        // half way.
        queue.observe(600, Some(1_100), at(start, 400));
        assert_eq!(queue.rate(), Some(250.0));
    }

    #[test]
    fn an_empty_queue_keeps_the_rate_learnt_under_load() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        queue.observe(100, Some(0), start);
        queue.observe(100, Some(100), at(start, 1_000));
        assert_eq!(queue.rate(), Some(100.0));
        queue.observe(0, Some(150), at(start, 2_000));
        queue.observe(0, Some(155), at(start, 3_000));
        assert_eq!(queue.rate(), Some(100.0));
        assert_eq!(queue.wait(at(start, 3_000)), Some(Duration::ZERO));
    }

    #[test]
    fn stalled_workers_make_every_request_wait_too_long() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        queue.observe(100, Some(500), start);
        queue.observe(140, Some(500), at(start, 200));
        queue.observe(180, Some(500), at(start, 400));
        assert_eq!(queue.rate(), Some(0.0));
        let refusal = admit(queue.wait(at(start, 400)), Duration::from_secs(30), None).unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn refusals_end_once_a_stalled_queue_has_drained() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        queue.observe(100, Some(500), start);
        queue.observe(140, Some(500), at(start, 200));
        assert!(queue.wait(at(start, 200)).unwrap() > Duration::from_secs(60));
        // The workers are back and have taken nearly all.
        queue.observe(3, Some(640), at(start, 400));
        assert_eq!(queue.wait(at(start, 400)), Some(Duration::ZERO));
    }

    #[test]
    fn a_request_is_refused_when_its_deadline_comes_before_its_turn() {
        let wait = Some(Duration::from_millis(2_400));
        assert_eq!(
            admit(wait, Duration::from_secs(3), None),
            Ok(()),
            "80 % of it"
        );
        let refusal = admit(wait, Duration::from_millis(2_900), None).unwrap_err();
        assert_eq!(refusal.wait, Duration::from_millis(2_400));
        assert_eq!(refusal.remaining, Duration::from_millis(2_900));
        assert_eq!(
            refusal.retry_after,
            Duration::from_secs(1),
            "at least a second"
        );
        // 9 s ahead, 80 % of 2 s allowed: 7.4 s until it would be admitted.
        let refusal =
            admit(Some(Duration::from_secs(9)), Duration::from_secs(2), None).unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_millis(7_400));
    }

    #[test]
    fn a_call_is_held_to_the_queue_wait_cap_whatever_its_deadline() {
        let cap = Some(Duration::from_millis(500));
        let ten_seconds = Duration::from_secs(10);
        assert_eq!(
            admit(Some(Duration::from_millis(450)), ten_seconds, cap),
            Ok(())
        );
        let refusal = admit(Some(Duration::from_millis(900)), ten_seconds, cap).unwrap_err();
        assert_eq!(refusal.wait, Duration::from_millis(900));
        assert_eq!(refusal.retry_after, Duration::from_secs(1));
        // A short deadline is still the tighter bound.
        assert!(
            admit(
                Some(Duration::from_millis(450)),
                Duration::from_millis(500),
                cap
            )
            .is_err()
        );
        // Without a cap, the deadline alone.
        assert_eq!(
            admit(Some(Duration::from_millis(900)), ten_seconds, None),
            Ok(())
        );
    }

    #[test]
    fn a_group_made_again_teaches_nothing() {
        let start = Instant::now();
        let mut queue = DrainEstimate::default();
        queue.observe(100, Some(5_000), start);
        queue.observe(100, Some(10), at(start, 200));
        assert_eq!(queue.rate(), None);
    }
}
