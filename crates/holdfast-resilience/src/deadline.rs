//! Bounding a wait by an absolute deadline.
//!
//! A request carries one deadline through every step it takes, rather than a
//! fresh timeout per step, so that retries and queueing cannot stretch the
//! total wait past what the caller agreed to.

use std::time::Duration;

use tokio::time::Instant;

/// The deadline passed before the work finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

/// Runs `fut` until it completes or `deadline` passes, whichever is first.
///
/// If the deadline has already passed, `fut` is not polled at all: nobody is
/// waiting for its answer, so starting the work would only add load.
pub async fn within<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, DeadlineExceeded> {
    if Instant::now() >= deadline {
        return Err(DeadlineExceeded);
    }
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| DeadlineExceeded)
}

/// Time left until `deadline`, zero once it has passed.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::time::{advance, sleep};

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn work_that_finishes_in_time_returns_its_output() {
        let deadline = Instant::now() + 100 * MS;

        let result = within(deadline, async {
            sleep(99 * MS).await;
            7
        })
        .await;

        assert_eq!(result, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn work_still_running_at_the_deadline_is_abandoned() {
        let start = Instant::now();
        let deadline = start + 100 * MS;

        let result = within(deadline, sleep(Duration::from_secs(10))).await;

        assert_eq!(result, Err(DeadlineExceeded));
        assert_eq!(Instant::now(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn work_whose_deadline_has_passed_is_not_started() {
        let deadline = Instant::now();
        advance(MS).await;
        let started = AtomicBool::new(false);

        let result = within(deadline, async { started.store(true, Ordering::SeqCst) }).await;

        assert_eq!(result, Err(DeadlineExceeded));
        assert!(!started.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_to_zero_and_stays_there() {
        let deadline = Instant::now() + 100 * MS;

        assert_eq!(remaining(deadline), 100 * MS);
        advance(40 * MS).await;
        assert_eq!(remaining(deadline), 60 * MS);
        advance(Duration::from_secs(1)).await;
        assert_eq!(remaining(deadline), Duration::ZERO);
    }
}
