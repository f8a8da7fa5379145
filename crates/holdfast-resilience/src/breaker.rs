//! A circuit breaker: fail fast while a dependency is known to be down.
//!
//! When Redis is unreachable, every call would otherwise wait for its own
//! timeout, tying up tasks and connections and piling work onto the moment of
//! recovery. The breaker watches outcomes and, after
//! [`failure_threshold`](BreakerConfig::failure_threshold) consecutive
//! failures, opens: calls are refused at once with [`BreakerOpen`] for
//! [`open_for`](BreakerConfig::open_for). After that a few probe calls are let
//! through (half-open); if they succeed the breaker closes, if one fails it
//! opens again for a fresh period.
//!
//! ```text
//!            failures >= threshold             open_for elapsed, next try_acquire
//!   Closed ─────────────────────────▶ Open ───────────────────────────────────▶ HalfOpen
//!     ▲                                ▲                                           │
//!     │                                └──────────── a probe fails ────────────────┤
//!     └─────────────────────── success_to_close probes succeed ────────────────────┘
//! ```
//!
//! A call takes a [`BreakerPermit`] from [`CircuitBreaker::try_acquire`] and
//! reports how it went with [`BreakerPermit::success`] or
//! [`BreakerPermit::failure`]. All state sits behind one `std::sync::Mutex`
//! that is held only for a few integer updates, never across an await.
//! Transitions are logged and broadcast as [`BreakerEvent`]s so that metrics
//! and supervisors can follow them.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

/// Transitions kept for a subscriber that has fallen behind. Transitions are
/// rare (at most a few per `open_for`), so a slow subscriber only loses
/// history when it has stopped reading altogether; it then gets `Lagged`.
const EVENT_CAPACITY: usize = 64;

/// How a [`CircuitBreaker`] behaves.
///
/// Zero is treated as one for every count, since zero would either never
/// admit a probe or open the breaker without a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting probes through.
    pub open_for: Duration,
    /// Probe calls allowed at the same time while half-open.
    pub half_open_probes: u32,
    /// Successful probes needed to close the breaker again.
    pub success_to_close: u32,
}

impl Default for BreakerConfig {
    /// Open after 5 failures in a row, for 1 s, then close after a single
    /// successful probe.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(1),
            half_open_probes: 1,
            success_to_close: 1,
        }
    }
}

impl BreakerConfig {
    fn normalized(self) -> Self {
        Self {
            failure_threshold: self.failure_threshold.max(1),
            open_for: self.open_for,
            half_open_probes: self.half_open_probes.max(1),
            success_to_close: self.success_to_close.max(1),
        }
    }
}

/// Where a breaker is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are refused until `open_for` has elapsed.
    Open,
    /// A limited number of probe calls pass to test recovery.
    HalfOpen,
}

impl BreakerState {
    /// `"closed"`, `"open"` or `"half_open"`, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// 0 (closed), 1 (open) or 2 (half-open), for a gauge.
    pub fn as_gauge(&self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker refused the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open; retry after {retry_after:?}")]
pub struct BreakerOpen {
    /// When it is worth asking again: the rest of the open period, or
    /// `open_for` when the breaker is half-open and all probe slots are taken.
    pub retry_after: Duration,
}

/// A state transition, broadcast to [`CircuitBreaker::subscribe`]rs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state before the transition.
    pub from: BreakerState,
    /// The state after it.
    pub to: BreakerState,
    /// When it happened.
    pub at: Instant,
}

/// A point-in-time view of a breaker, for health endpoints and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The current state (see [`CircuitBreaker::state`] on when `Open` ends).
    pub state: BreakerState,
    /// When the breaker entered `state`.
    pub since: Instant,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// How many times the breaker has opened since it was created.
    pub times_opened: u64,
    /// How many calls it has refused since it was created.
    pub rejected: u64,
}

/// A circuit breaker guarding one dependency.
///
/// Methods take `&self`; share it behind an `Arc`.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: Arc<str>,
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
    /// Sends every transition to whoever subscribed; sending with no
    /// subscribers fails, which is fine, since nobody asked to know.
    events: broadcast::Sender<BreakerEvent>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    since: Instant,
    /// Bumped on every transition, so that a permit taken in an earlier state
    /// can tell its outcome no longer applies.
    epoch: u64,
    open_until: Instant,
    consecutive_failures: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    times_opened: u64,
    rejected: u64,
}

impl CircuitBreaker {
    /// A closed breaker; `name` identifies it in logs and events.
    pub fn new(name: impl Into<String>, cfg: BreakerConfig) -> Self {
        let now = Instant::now();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            name: Arc::from(name.into()),
            cfg: cfg.normalized(),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                since: now,
                epoch: 0,
                open_until: now,
                consecutive_failures: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                times_opened: 0,
                rejected: 0,
            }),
            events,
        }
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration in force, with zero counts raised to one.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Asks to make a call.
    ///
    /// Closed: always granted. Open: refused with the remaining open time
    /// until `open_for` has elapsed; the first call after that moves the
    /// breaker to half-open and becomes a probe. Half-open: granted as a probe
    /// while fewer than `half_open_probes` probes are in flight.
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, BreakerOpen> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.state == BreakerState::Open {
            if now < inner.open_until {
                inner.rejected += 1;
                return Err(BreakerOpen {
                    retry_after: inner.open_until - now,
                });
            }
            self.transition(&mut inner, BreakerState::HalfOpen, now);
        }
        let probe = inner.state == BreakerState::HalfOpen;
        if probe {
            if inner.probes_in_flight >= self.cfg.half_open_probes {
                inner.rejected += 1;
                return Err(BreakerOpen {
                    retry_after: self.cfg.open_for,
                });
            }
            inner.probes_in_flight += 1;
        }
        Ok(BreakerPermit {
            breaker: self,
            epoch: inner.epoch,
            probe,
            settled: false,
        })
    }

    /// Counts a success observed without a permit.
    ///
    /// Closed: resets the failure count. Half-open: counts towards closing.
    /// Open: ignored, since only the open period decides when to probe.
    pub fn record_success(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        self.on_success(&mut inner, now);
    }

    /// Counts a failure observed without a permit.
    ///
    /// Closed: may open the breaker. Half-open: reopens it. Open: ignored.
    pub fn record_failure(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        self.on_failure(&mut inner, now);
    }

    /// Opens the breaker now, for a full `open_for`, whatever its state.
    ///
    /// For when something else (a connection supervisor) already knows the
    /// dependency is down, so callers need not fail `failure_threshold` times
    /// to find out. If the breaker is already open its open period restarts.
    pub fn force_open(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.state == BreakerState::Open {
            inner.open_until = now + self.cfg.open_for;
        } else {
            self.transition(&mut inner, BreakerState::Open, now);
        }
    }

    /// Closes the breaker now and forgets past failures.
    pub fn reset(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        self.transition(&mut inner, BreakerState::Closed, now);
    }

    /// The current state.
    ///
    /// Stays `Open` after `open_for` has elapsed until a call to
    /// [`try_acquire`](Self::try_acquire) moves it to `HalfOpen`: the state
    /// changes only when something happens, so every change is seen by
    /// subscribers as an event, never inferred by readers alone.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Counters and state, read together.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        BreakerSnapshot {
            state: inner.state,
            since: inner.since,
            consecutive_failures: inner.consecutive_failures,
            times_opened: inner.times_opened,
            rejected: inner.rejected,
        }
    }

    /// Receives every state transition from now on, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.events.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held, and if something did the
        // counters would still be coherent enough to keep guarding calls.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_success(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            BreakerState::Closed => inner.consecutive_failures = 0,
            BreakerState::HalfOpen => {
                inner.consecutive_failures = 0;
                inner.probe_successes += 1;
                if inner.probe_successes >= self.cfg.success_to_close {
                    self.transition(inner, BreakerState::Closed, now);
                }
            }
            BreakerState::Open => {}
        }
    }

    fn on_failure(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            BreakerState::Closed => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                if inner.consecutive_failures >= self.cfg.failure_threshold {
                    self.transition(inner, BreakerState::Open, now);
                }
            }
            BreakerState::HalfOpen => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                self.transition(inner, BreakerState::Open, now);
            }
            BreakerState::Open => {}
        }
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState, now: Instant) {
        let from = inner.state;
        if from == to {
            return;
        }
        inner.state = to;
        inner.since = now;
        inner.epoch += 1;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        match to {
            BreakerState::Open => {
                inner.open_until = now + self.cfg.open_for;
                inner.times_opened += 1;
                tracing::warn!(
                    breaker = %self.name,
                    %from,
                    %to,
                    consecutive_failures = inner.consecutive_failures,
                    open_for = ?self.cfg.open_for,
                    "circuit breaker opened"
                );
            }
            BreakerState::HalfOpen => {
                tracing::info!(breaker = %self.name, %from, %to, "circuit breaker probing");
            }
            BreakerState::Closed => {
                inner.consecutive_failures = 0;
                tracing::info!(breaker = %self.name, %from, %to, "circuit breaker closed");
            }
        }
        // Sent under the lock so that subscribers see transitions in the
        // order they happened, even when threads race.
        let _ = self.events.send(BreakerEvent {
            name: Arc::clone(&self.name),
            from,
            to,
            at: now,
        });
    }
}

/// Permission to make one call; report its outcome with
/// [`success`](Self::success) or [`failure`](Self::failure).
///
/// Dropping it without either (the call was cancelled, or failed in a way
/// that says nothing about the dependency) frees its probe slot and counts as
/// neither. An outcome reported after the breaker has changed state since the
/// permit was granted is ignored, since it describes the dependency as it was
/// before that change.
#[must_use = "report the outcome with success() or failure(); dropping counts as neither"]
#[derive(Debug)]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    epoch: u64,
    probe: bool,
    settled: bool,
}

impl BreakerPermit<'_> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.settle(Some(true));
    }

    /// The call failed in a way that suggests the dependency is unhealthy.
    pub fn failure(mut self) {
        self.settle(Some(false));
    }

    fn settle(&mut self, succeeded: Option<bool>) {
        self.settled = true;
        let now = Instant::now();
        let mut inner = self.breaker.lock();
        if inner.epoch != self.epoch {
            return;
        }
        if self.probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
        match succeeded {
            Some(true) => self.breaker.on_success(&mut inner, now),
            Some(false) => self.breaker.on_failure(&mut inner, now),
            None => {}
        }
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        // Only probes hold a slot; an abandoned closed-state call has nothing
        // to give back, so the lock is skipped.
        if !self.settled && self.probe {
            self.settle(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    fn breaker(cfg: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new("redis", cfg)
    }

    fn fail(breaker: &CircuitBreaker, times: u32) {
        for _ in 0..times {
            breaker
                .try_acquire()
                .expect("closed breaker admits")
                .failure();
        }
    }

    fn config(
        failure_threshold: u32,
        half_open_probes: u32,
        success_to_close: u32,
    ) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            open_for: Duration::from_secs(1),
            half_open_probes,
            success_to_close,
        }
    }

    /// A new breaker after `failures` failed calls.
    fn after_failures(cfg: BreakerConfig, failures: u32) -> CircuitBreaker {
        let breaker = breaker(cfg);
        fail(&breaker, failures);
        breaker
    }

    /// A breaker with a threshold of one that has tripped and whose open
    /// period has just run out, so that the next call is a probe.
    async fn ready_to_probe(half_open_probes: u32, success_to_close: u32) -> CircuitBreaker {
        let breaker = after_failures(config(1, half_open_probes, success_to_close), 1);
        advance(Duration::from_secs(1)).await;
        breaker
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_opens_after_consecutive_failures() {
        let breaker = after_failures(config(3, 1, 1), 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.snapshot().consecutive_failures, 2);
        fail(&breaker, 1);

        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.snapshot().times_opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let breaker = after_failures(config(3, 1, 1), 2);
        breaker.try_acquire().unwrap().success();
        fail(&breaker, 2);

        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.snapshot().consecutive_failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_rejects_with_the_remaining_open_time() {
        let breaker = after_failures(config(1, 1, 1), 1);

        advance(300 * MS).await;
        let first = breaker.try_acquire().unwrap_err();
        advance(200 * MS).await;
        let second = breaker.try_acquire().unwrap_err();

        assert_eq!(first.retry_after, 700 * MS);
        assert_eq!(second.retry_after, 500 * MS);
        assert_eq!(breaker.snapshot().rejected, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_stays_open_until_someone_asks_after_open_for() {
        let breaker = after_failures(config(1, 1, 1), 1);

        advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        let permit = breaker.try_acquire().expect("open_for has elapsed");

        assert!(permit.is_probe());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_open_breaker_admits_only_the_configured_probes() {
        let breaker = ready_to_probe(2, 1).await;

        let first = breaker.try_acquire();
        let second = breaker.try_acquire();
        let third = breaker.try_acquire();

        assert!(first.is_ok_and(|p| p.is_probe()));
        assert!(second.is_ok_and(|p| p.is_probe()));
        assert_eq!(
            third.unwrap_err(),
            BreakerOpen {
                retry_after: Duration::from_secs(1)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probe_slots_stay_taken_until_the_probe_reports() {
        let breaker = ready_to_probe(1, 1).await;

        let probe = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err());
        advance(Duration::from_secs(10)).await;
        assert!(breaker.try_acquire().is_err(), "time alone frees no slot");
        probe.success();

        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_the_breaker_for_a_fresh_period() {
        let breaker = ready_to_probe(1, 1).await;

        advance(400 * MS).await;
        breaker.try_acquire().unwrap().failure();

        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_secs(1)
        );
        assert_eq!(breaker.snapshot().times_opened, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn enough_successful_probes_close_the_breaker() {
        let breaker = ready_to_probe(1, 2).await;

        breaker.try_acquire().unwrap().success();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.try_acquire().unwrap().success();

        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.try_acquire().is_ok_and(|p| !p.is_probe()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_releases_its_probe_slot_and_counts_as_neither() {
        let breaker = ready_to_probe(1, 1).await;

        drop(breaker.try_acquire().unwrap());
        let next = breaker.try_acquire();

        assert!(next.is_ok_and(|p| p.is_probe()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_from_before_a_state_change_is_ignored() {
        let breaker = breaker(config(1, 1, 1));
        let stale = breaker.try_acquire().unwrap();
        breaker.force_open();
        breaker.reset();

        stale.failure();

        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.snapshot().consecutive_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_broadcast_in_order() {
        let breaker = breaker(config(2, 1, 1));
        let mut events = breaker.subscribe();
        let start = Instant::now();

        fail(&breaker, 2);
        advance(Duration::from_secs(1)).await;
        breaker.try_acquire().unwrap().success();

        let mut seen = Vec::new();
        loop {
            match events.try_recv() {
                Ok(event) => seen.push(event),
                Err(TryRecvError::Empty) => break,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let opened_at = start;
        let probed_at = start + Duration::from_secs(1);
        let expected = [
            (BreakerState::Closed, BreakerState::Open, opened_at),
            (BreakerState::Open, BreakerState::HalfOpen, probed_at),
            (BreakerState::HalfOpen, BreakerState::Closed, probed_at),
        ];
        let seen_triples: Vec<_> = seen.iter().map(|e| (e.from, e.to, e.at)).collect();
        assert_eq!(seen_triples, expected);
        assert!(seen.iter().all(|e| &*e.name == "redis"));
    }

    #[tokio::test(start_paused = true)]
    async fn force_open_refuses_calls_at_once_and_reset_closes() {
        let breaker = breaker(BreakerConfig::default());
        let mut events = breaker.subscribe();

        breaker.force_open();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_secs(1)
        );

        advance(600 * MS).await;
        breaker.force_open();
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_secs(1),
            "forcing an open breaker restarts its open period"
        );

        breaker.reset();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.try_acquire().is_ok());

        assert_eq!(events.try_recv().unwrap().to, BreakerState::Open);
        assert_eq!(events.try_recv().unwrap().to, BreakerState::Closed);
        assert_eq!(events.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(breaker.snapshot().times_opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_recorded_without_a_permit_drive_the_breaker() {
        let breaker = breaker(config(2, 1, 1));

        breaker.record_failure();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Open, "open ignores outcomes");

        advance(Duration::from_secs(1)).await;
        let _probe = breaker.try_acquire().unwrap();
        breaker.record_success();

        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_says_when_the_state_began() {
        let breaker = breaker(config(1, 1, 1));
        advance(250 * MS).await;
        let opened_at = Instant::now();

        fail(&breaker, 1);
        advance(100 * MS).await;
        let snapshot = breaker.snapshot();

        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.since, opened_at);
    }

    #[test]
    fn zero_counts_in_the_config_are_raised_to_one() {
        let breaker = breaker(config(0, 0, 0));

        assert_eq!(*breaker.config(), config(1, 1, 1));
    }

    #[test]
    fn states_have_stable_names_and_gauge_values() {
        let states = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ];

        let names: Vec<_> = states.iter().map(BreakerState::as_str).collect();
        let gauges: Vec<_> = states.iter().map(BreakerState::as_gauge).collect();

        assert_eq!(names, ["closed", "open", "half_open"]);
        assert_eq!(gauges, [0.0, 1.0, 2.0]);
    }

    #[test]
    fn a_breaker_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<BreakerPermit<'static>>();
    }
}
