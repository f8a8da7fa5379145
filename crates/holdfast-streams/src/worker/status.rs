//! [`WorkerStatus`]: the live figures a worker shares with its health
//! endpoints.
//!
//! The worker's tasks write them through the setters below (readers and the
//! reclaim mark consumption, terminals count themselves active, the
//! finisher counts what it wrote, maintenance stores the backlog, `run`
//! marks the drain); anyone holding a clone reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use holdfast_core::Deadline;

/// Live figures of a worker, shared with its health endpoints.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    capacity: usize,
    active: AtomicUsize,
    handled: AtomicU64,
    started_ms: u64,
    last_consumed_ms: AtomicU64,
    backlog: AtomicU64,
    lag: AtomicU64,
    draining: AtomicBool,
    stall_after: Duration,
}

impl WorkerStatus {
    pub(super) fn new(capacity: usize, stall_after: Duration) -> Self {
        let now = Deadline::now_unix_ms();
        Self {
            inner: Arc::new(StatusInner {
                capacity,
                active: AtomicUsize::new(0),
                handled: AtomicU64::new(0),
                started_ms: now,
                last_consumed_ms: AtomicU64::new(now),
                backlog: AtomicU64::new(0),
                lag: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                stall_after,
            }),
        }
    }

    /// Terminals (concurrent requests allowed).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
    /// Requests being handled now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }
    /// Requests finished since start.
    pub fn handled(&self) -> u64 {
        self.inner.handled.load(Ordering::Relaxed)
    }
    /// Backlog of the topic as last read.
    pub fn backlog(&self) -> u64 {
        self.inner.backlog.load(Ordering::Relaxed)
    }
    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }
    /// When an entry was last read, unix ms (start time before the first).
    pub fn last_consumed_unix_ms(&self) -> u64 {
        self.inner.last_consumed_ms.load(Ordering::Relaxed)
    }
    /// Whether entries wait undelivered (group lag) while this worker,
    /// with nothing in hand, has consumed nothing for `stall_after`: it is
    /// stuck and should be restarted. Entries pending with other workers do
    /// not count; they are busy, not waiting.
    pub fn stalled(&self) -> bool {
        let idle = Deadline::now_unix_ms().saturating_sub(self.last_consumed_unix_ms());
        self.inner.lag.load(Ordering::Relaxed) > 0
            && self.active() == 0
            && idle > self.inner.stall_after.as_millis() as u64
    }
    /// Start time, unix ms.
    pub fn started_unix_ms(&self) -> u64 {
        self.inner.started_ms
    }
}

/// The writers' side, for the worker's own tasks.
impl WorkerStatus {
    /// Entries were just read or claimed.
    pub(super) fn mark_consumed(&self) {
        self.inner
            .last_consumed_ms
            .store(Deadline::now_unix_ms(), Ordering::Relaxed);
    }

    /// A terminal started handling an entry.
    pub(super) fn request_started(&self) {
        self.inner.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A terminal is done with its entry.
    pub(super) fn request_ended(&self) {
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// The finisher wrote `count` outcomes.
    pub(super) fn add_handled(&self, count: u64) {
        self.inner.handled.fetch_add(count, Ordering::Relaxed);
    }

    /// The topic's backlog and group lag as maintenance last read them.
    pub(super) fn set_backlog(&self, backlog: u64, lag: u64) {
        self.inner.backlog.store(backlog, Ordering::Relaxed);
        self.inner.lag.store(lag, Ordering::Relaxed);
    }

    /// Shutdown has begun.
    pub(super) fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_stalled_only_with_a_backlog_no_work_and_a_long_silence() {
        let status = WorkerStatus::new(4, Duration::from_millis(100));
        let long_ago = Deadline::now_unix_ms() - 1_000;
        status
            .inner
            .last_consumed_ms
            .store(long_ago, Ordering::Relaxed);
        assert!(!status.stalled(), "no backlog: idle, not stalled");

        status.inner.backlog.store(3, Ordering::Relaxed);
        assert!(
            !status.stalled(),
            "pending with others is busy, not waiting"
        );
        status.inner.lag.store(3, Ordering::Relaxed);
        assert!(status.stalled());

        status.inner.active.store(1, Ordering::Relaxed);
        assert!(!status.stalled(), "busy is not stalled");

        status.inner.active.store(0, Ordering::Relaxed);
        status
            .inner
            .last_consumed_ms
            .store(Deadline::now_unix_ms(), Ordering::Relaxed);
        assert!(!status.stalled(), "consumed just now");
    }
}
