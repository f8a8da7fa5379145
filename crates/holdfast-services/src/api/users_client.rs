//! The order service's HTTP client for the users endpoint
//! (`GET {users_base_url}/api/users/{id}`, by default this api itself).
//!
//! A per-attempt timeout, jittered retries under a retry budget, an overall
//! deadline and a circuit breaker, so a dead users side costs a quick 503
//! (see the mapping of [`UsersFailure`] in [`crate::problem`]), never a
//! hang.
//!
//! The caller's credentials (`Authorization`, `X-API-Key`) go with each
//! lookup: the users endpoint sees the same client the order came from.

use std::time::Duration;

use holdfast_resilience::{
    Backoff, BreakerConfig, BreakerOpen, CircuitBreaker, RetryBudget, within,
};
use tokio::time::Instant;

/// The API key header the users endpoint may need (see [`crate::auth`]).
const CREDENTIAL_HEADER: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");

/// Limits of the order service's calls to the users endpoint.
#[derive(Clone, Debug)]
pub struct UsersClientConfig {
    /// Longest wait for one attempt (default 1 s).
    pub attempt_timeout: Duration,
    /// Longest wait for a whole lookup, retries included (default 3 s).
    pub deadline: Duration,
    /// Most attempts per lookup (default 4).
    pub max_attempts: u32,
    /// Jittered delay between attempts (default 50 ms doubling to 500 ms).
    pub backoff: Backoff,
    /// The breaker in front of the users endpoint (default config).
    pub breaker: BreakerConfig,
}

impl Default for UsersClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(3),
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Why a users lookup gave no answer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UsersFailure {
    /// Connect error, timeout or 5xx: worth another attempt.
    Transient(&'static str),
    /// The breaker refused the call.
    Open(BreakerOpen),
    /// An answer that is neither a user nor "not found".
    Unexpected(u16),
}

/// The client: one per api, shared by every order request, so the breaker
/// and the retry budget see all of them.
pub(super) struct UsersClient {
    http: reqwest::Client,
    /// The base URL, without a trailing slash.
    pub(super) base: String,
    cfg: UsersClientConfig,
    budget: RetryBudget,
    pub(super) breaker: CircuitBreaker,
}

impl UsersClient {
    pub(super) fn new(base: String, cfg: UsersClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.attempt_timeout)
            .timeout(cfg.attempt_timeout)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            breaker: CircuitBreaker::new("users", cfg.breaker),
            budget: RetryBudget::default(),
            cfg,
        })
    }

    /// Whether user `id` exists, asked over HTTP with the credentials in
    /// `caller` (the order request's headers).
    pub(super) async fn user_exists(
        &self,
        id: i64,
        caller: &axum::http::HeaderMap,
    ) -> Result<bool, UsersFailure> {
        let deadline = Instant::now() + self.cfg.deadline;
        holdfast_resilience::retry(
            self.cfg.backoff,
            self.cfg.max_attempts,
            Some(&self.budget),
            deadline,
            |failure| matches!(failure, UsersFailure::Transient(_)),
            |_| self.attempt(id, caller, deadline),
        )
        .await
    }

    async fn attempt(
        &self,
        id: i64,
        caller: &axum::http::HeaderMap,
        deadline: Instant,
    ) -> Result<bool, UsersFailure> {
        let permit = self.breaker.try_acquire().map_err(UsersFailure::Open)?;
        let url = format!("{}/api/users/{id}", self.base);
        // When less than an attempt's time is left, the overall deadline
        // may cut the attempt short: that says nothing about the users side.
        let cut_short =
            deadline.saturating_duration_since(Instant::now()) < self.cfg.attempt_timeout;
        let mut request = self.http.get(url);
        for name in [axum::http::header::AUTHORIZATION, CREDENTIAL_HEADER] {
            if let Some(value) = caller.get(&name) {
                request = request.header(name, value);
            }
        }
        let sent = within(deadline, request.send()).await;
        let outcome = match sent {
            Err(_) if cut_short => {
                drop(permit);
                return Err(UsersFailure::Transient("users_timeout"));
            }
            Err(_) => Err(UsersFailure::Transient("users_timeout")),
            Ok(Err(err)) if err.is_timeout() => Err(UsersFailure::Transient("users_timeout")),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "users call failed");
                Err(UsersFailure::Transient("users_unreachable"))
            }
            Ok(Ok(resp)) => match resp.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                status if status >= 500 => Err(UsersFailure::Transient("users_error")),
                status => Err(UsersFailure::Unexpected(status)),
            },
        };
        match outcome {
            Err(UsersFailure::Transient(_)) => permit.failure(),
            _ => permit.success(),
        }
        outcome
    }
}
