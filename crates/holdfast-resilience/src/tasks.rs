//! Every background task has an owner.
//!
//! A role hands one [`Tasks`] to each part that starts work of its own (the
//! Redis supervisor, the caller's reply reader, the cache's listeners and
//! replays). Each task is spawned on it and watches its stop token; when the
//! role stops, [`Tasks::stop_and_wait`] cancels the token, closes the
//! tracker and waits, under a grace period, until every task has finished.
//! So no task outlives the role that started it, and a test that stops a
//! role knows nothing of it is still running.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// The owner of a group of background tasks: a stop token they watch and a
/// tracker that knows when the last one has ended. Clones share both.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// An owner with nothing running yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` as one of these tasks. It should end soon after
    /// [`Tasks::stopping`] resolves.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// The stop token the tasks watch (for code that takes a token).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Resolves once the owner has asked its tasks to stop.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// Whether the tasks have been asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// How many tasks are still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Asks every task to stop and waits for them, at most `grace`; `true`
    /// when all of them had ended in time. Tasks spawned afterwards still
    /// run, but see the stop token already cancelled.
    pub async fn stop_and_wait(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Tasks stopped by an existing token, for callers that only have a token
/// (tests, benchmarks); nobody waits for them unless the caller keeps the
/// [`Tasks`] and does.
impl From<CancellationToken> for Tasks {
    fn from(stop: CancellationToken) -> Self {
        Self {
            stop,
            tracker: TaskTracker::new(),
        }
    }
}

impl From<&Tasks> for Tasks {
    fn from(tasks: &Tasks) -> Self {
        tasks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_and_wait_returns_once_every_task_has_seen_the_stop() {
        let tasks = Tasks::new();
        for _ in 0..3 {
            let owner = tasks.clone();
            tasks.spawn(async move {
                owner.stopping().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            });
        }
        assert_eq!(tasks.running(), 3);
        assert!(tasks.stop_and_wait(Duration::from_secs(1)).await);
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_stop_is_reported_after_the_grace() {
        let tasks = Tasks::new();
        tasks.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        assert!(!tasks.stop_and_wait(Duration::from_secs(2)).await);
        assert_eq!(tasks.running(), 1);
    }
}
