//! The `worker_kill` kind: while it lasts, one running worker chosen at
//! random is killed with SIGKILL every `every`, as a crash loop or the OOM
//! killer would, and each is started again `restart_after` later with the
//! same consumer name (so it finds its own pending entries).
//!
//! ```toml
//! kind = "worker_kill"
//! every = "3s"
//! restart_after = "1s"
//! ```
//!
//! It is played rather than applied: nothing is left to revert when it
//! ends, except waiting for the restarts still due.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{FaultLog, SharedStack};

/// The `worker_kill` kind's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerKill {
    /// Time between kills.
    #[serde(with = "crate::durations::text")]
    pub every: Duration,
    /// Time a killed worker stays dead.
    #[serde(with = "crate::durations::text")]
    pub restart_after: Duration,
}

impl WorkerKill {
    /// Kills a worker every `every` until `until` (no kill at or after it)
    /// or until `cancel`, then waits until every killed worker has been
    /// started again.
    pub(super) async fn run(
        &self,
        stack: &SharedStack,
        log: &impl FaultLog,
        until: Instant,
        cancel: &CancellationToken,
    ) {
        // Each restart is its own task, since the next kill may come before
        // it is due; all are awaited here, so none outlives the fault.
        let mut restarts = Vec::new();
        loop {
            if let Some(restart) = self.kill_one(stack, log).await {
                restarts.push(restart);
            }
            let next = Instant::now() + self.every;
            if next >= until {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = cancel.cancelled() => {}
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = cancel.cancelled() => break,
            }
        }
        for restart in restarts {
            let _ = restart.await;
        }
    }

    /// Kills one running worker at random, if any runs; the task that
    /// starts it again.
    async fn kill_one(
        &self,
        stack: &SharedStack,
        log: &impl FaultLog,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut guard = stack.lock().await;
        let running: Vec<usize> = (0..guard.workers.len())
            .filter(|&i| guard.workers[i].is_running())
            .collect();
        if running.is_empty() {
            return None;
        }
        let victim = running[fastrand::usize(..running.len())];
        guard.workers[victim].kill9().await;
        let name = guard.workers[victim].name.clone();
        log.process(&name, "killed with SIGKILL".into());
        let stack = stack.clone();
        let log = log.clone();
        let restart_after = self.restart_after;
        Some(tokio::spawn(async move {
            tokio::time::sleep(restart_after).await;
            let mut guard = stack.lock().await;
            match guard.restart_worker(victim).await {
                Ok(()) => log.process(&name, "restarted".into()),
                Err(e) => log.process(&name, format!("restart failed: {e}")),
            }
        }))
    }
}
