//! Retrying a failed operation, within limits.
//!
//! A retry is only worth making when the error is transient, attempts remain,
//! the shared [`RetryBudget`] says retries are not already multiplying load,
//! and the caller's deadline leaves time to wait the [`Backoff`] delay. Any of
//! those failing ends the loop with the last error, so callers see the real
//! cause rather than a generic "gave up".

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;

/// Runs `op` until it succeeds or retrying stops making sense.
///
/// `op` receives the attempt number, starting at 0. After a failure of
/// attempt `n` it is called again after `backoff.delay(n)` only if all of:
///
/// - `is_retryable` says the error is transient;
/// - fewer than `max_attempts` attempts have been made (0 counts as 1: the
///   first attempt is always made);
/// - the delay would end before `deadline`;
/// - `budget`, if given, has a token to spend (checked last, so that a token
///   is only spent on a retry that will happen).
///
/// One deposit is made into `budget` per call, for the original request.
/// Otherwise the last error is returned. Bounding a single attempt by the
/// deadline is the caller's business (see [`crate::deadline::within`]).
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    max_attempts: u32,
    budget: Option<&RetryBudget>,
    deadline: Instant,
    is_retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    if let Some(budget) = budget {
        budget.deposit();
    }
    let mut attempt = 0;
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !is_retryable(&error) || attempt.saturating_add(1) >= max_attempts {
            return Err(error);
        }
        let delay = backoff.delay(attempt);
        let wake = Instant::now().checked_add(delay);
        if wake.is_none_or(|wake| wake >= deadline) {
            tracing::debug!(
                attempt,
                ?delay,
                "not retrying: the backoff would outlast the deadline"
            );
            return Err(error);
        }
        if budget.is_some_and(|budget| !budget.try_withdraw()) {
            tracing::debug!(attempt, "not retrying: retry budget exhausted");
            return Err(error);
        }
        tracing::debug!(attempt, ?delay, "retrying after a transient error");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[derive(Debug, PartialEq, Eq)]
    enum Failure {
        Transient(u32),
        Permanent,
    }

    fn transient(error: &Failure) -> bool {
        matches!(error, Failure::Transient(_))
    }

    fn quick() -> Backoff {
        Backoff::new(MS, 10 * MS)
    }

    fn far_deadline() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Retries, with [`quick`] backoff, an operation whose attempt `n` fails
    /// with `failure(n)`: what `retry` returned and how many calls it made.
    async fn always_failing(
        max_attempts: u32,
        budget: Option<&RetryBudget>,
        deadline: Instant,
        failure: fn(u32) -> Failure,
    ) -> (Result<(), Failure>, u32) {
        let calls = Cell::new(0);
        let result = retry(
            quick(),
            max_attempts,
            budget,
            deadline,
            transient,
            |attempt| {
                calls.set(calls.get() + 1);
                let error = failure(attempt);
                async move { Err(error) }
            },
        )
        .await;
        (result, calls.get())
    }

    #[tokio::test(start_paused = true)]
    async fn it_retries_until_the_operation_succeeds() {
        let calls = Cell::new(Vec::new());

        let result = retry(quick(), 10, None, far_deadline(), transient, |attempt| {
            let mut seen = calls.take();
            seen.push(attempt);
            calls.set(seen);
            async move {
                if attempt < 3 {
                    Err(Failure::Transient(attempt))
                } else {
                    Ok("done")
                }
            }
        })
        .await;

        assert_eq!(result, Ok("done"));
        assert_eq!(calls.take(), [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn it_stops_at_max_attempts_with_the_last_error() {
        let (result, calls) = always_failing(4, None, far_deadline(), Failure::Transient).await;

        assert_eq!(result, Err(Failure::Transient(3)));
        assert_eq!(calls, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_max_attempts_still_makes_the_first_attempt() {
        let (result, calls) = always_failing(0, None, far_deadline(), Failure::Transient).await;

        assert_eq!(result, Err(Failure::Transient(0)));
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn it_does_not_retry_a_permanent_error() {
        let (result, calls) =
            always_failing(10, None, far_deadline(), |_| Failure::Permanent).await;

        assert_eq!(result, Err(Failure::Permanent));
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn it_stops_when_the_budget_is_empty() {
        // No earned tokens at ratio 0, so only the floor of 2 retries is available.
        let budget = RetryBudget::new(0.0, 2, Duration::from_secs(10));

        let (result, calls) =
            always_failing(10, Some(&budget), far_deadline(), Failure::Transient).await;

        assert_eq!(result, Err(Failure::Transient(2)));
        assert_eq!(calls, 3);
        assert!(!budget.try_withdraw(), "the retries spent the floor");
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_deposits_once_for_its_original_request() {
        let budget = RetryBudget::new(0.5, 0, Duration::from_secs(10));

        for _ in 0..4 {
            let (result, _) =
                always_failing(10, Some(&budget), far_deadline(), |_| Failure::Permanent).await;
            assert!(result.is_err());
        }

        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn it_never_sleeps_past_the_deadline() {
        fastrand::seed(7);
        let start = Instant::now();
        let deadline = start + 500 * MS;
        let last_attempt_at = Cell::new(start);

        let result: Result<(), _> = retry(
            Backoff::new(100 * MS, Duration::from_secs(10)),
            50,
            None,
            deadline,
            transient,
            |attempt| {
                last_attempt_at.set(Instant::now());
                async move { Err(Failure::Transient(attempt)) }
            },
        )
        .await;

        assert!(
            matches!(result, Err(Failure::Transient(n)) if n < 49),
            "{result:?}"
        );
        assert!(last_attempt_at.get() < deadline);
        assert!(
            Instant::now() < deadline,
            "returned at {:?}",
            Instant::now() - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_does_not_retry_once_the_deadline_has_passed() {
        let deadline = Instant::now();

        let (result, calls) = always_failing(10, None, deadline, Failure::Transient).await;

        assert_eq!(result, Err(Failure::Transient(0)));
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn it_waits_the_backoff_between_attempts() {
        let start = Instant::now();
        let attempt_times = Cell::new(Vec::new());

        let result: Result<(), _> = retry(
            Backoff::new(100 * MS, 100 * MS),
            4,
            None,
            far_deadline(),
            transient,
            |attempt| {
                let mut times = attempt_times.take();
                times.push(Instant::now() - start);
                attempt_times.set(times);
                async move { Err(Failure::Transient(attempt)) }
            },
        )
        .await;

        assert!(result.is_err());
        let times = attempt_times.take();
        assert_eq!(times.len(), 4);
        assert!(
            times.windows(2).all(|w| w[1] - w[0] <= 100 * MS),
            "{times:?}"
        );
        assert!(
            times[3] > Duration::ZERO,
            "some backoff was taken: {times:?}"
        );
    }
}
