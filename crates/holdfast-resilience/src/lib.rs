//! Retry with jittered backoff and a retry budget, circuit breaker, deadline helpers.
//!
//! The parts fit together around one call to Redis (or anything else that can
//! fail for a while):
//!
//! - [`deadline`] bounds how long anyone waits for the answer;
//! - [`breaker`] refuses the call outright while the dependency is known to be
//!   down, so callers fail in microseconds instead of queueing on a dead
//!   connection;
//! - [`retry`](mod@retry) repeats a failed call after a [`backoff`] delay, but only while
//!   the [`budget`] says retries are not multiplying load and the deadline
//!   leaves room for another attempt.
//!
//! [`tasks`] gives every background task an owner that stops it and waits
//! for it.
//!
//! All time comes from [`tokio::time::Instant`], so tests run in virtual time.

#![warn(missing_docs)]

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod deadline;
pub mod retry;
pub mod tasks;

pub use backoff::Backoff;
pub use breaker::{
    BreakerConfig, BreakerEvent, BreakerOpen, BreakerPermit, BreakerSnapshot, BreakerState,
    CircuitBreaker,
};
pub use budget::RetryBudget;
pub use deadline::{DeadlineExceeded, remaining, within};
pub use retry::retry;
pub use tasks::Tasks;
