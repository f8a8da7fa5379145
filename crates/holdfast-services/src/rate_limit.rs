//! Per-client rate limits on the public listeners: one budget per client
//! address and route group, refilled continuously (GCRA, `governor`).
//!
//! A request within the budget goes on and its answer carries
//! `RateLimit-Limit` (the burst a client may spend at once),
//! `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the budget is
//! full again). One over it gets `429 rate_limited` with the same headers
//! and a `Retry-After`. The limits are generous by default (see
//! [`RateLimitConfig::DEFAULT_PER_SECOND`]): they stop a runaway client,
//! not the benchmarks, chaos scenarios or loop tests. Health and metrics
//! paths are never limited, so probes always get through.
//!
//! The client is the API key or token subject that authentication
//! accepted (see [`crate::auth`]), or else its address: credentials that
//! were not checked would let a client dodge the limit by changing them.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

use crate::auth::Client;
use crate::problem::ApiError;

/// Requests a client may make per route group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may come at once (the bucket's size).
    pub burst: u32,
}

impl RateLimitConfig {
    /// Requests per second per client and route group unless configured
    /// otherwise: far above what one client of these services needs, and
    /// above what the project's own benchmarks send from one address.
    pub const DEFAULT_PER_SECOND: u32 = 100_000;
    /// The burst unless configured otherwise: a second's worth.
    pub const DEFAULT_BURST: u32 = 100_000;
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: Self::DEFAULT_PER_SECOND,
            burst: Self::DEFAULT_BURST,
        }
    }
}

/// Whose budget a request spends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Who {
    Address(IpAddr),
    Client(Client),
}

type Key = (Who, &'static str);
type Limiter = RateLimiter<
    Key,
    governor::state::keyed::DefaultKeyedStateStore<Key>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The limiter of one listener.
#[derive(Clone)]
pub(crate) struct RateLimits {
    limiter: Arc<Limiter>,
    cfg: RateLimitConfig,
}

impl RateLimits {
    /// A limiter for `cfg`; clients it has not seen for a while are
    /// forgotten every minute, so the table stays as small as the set of
    /// active clients.
    pub(crate) fn new(cfg: RateLimitConfig) -> Self {
        let per_second = NonZeroU32::new(cfg.per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(cfg.burst.max(1)).expect("at least 1");
        let limiter = Arc::new(
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(forget_idle_clients(Arc::downgrade(&limiter)));
        }
        Self { limiter, cfg }
    }
}

async fn forget_idle_clients(limiter: Weak<Limiter>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// The group a route belongs to: its first segment (`/jobs/…` → `jobs`),
/// or its first two under `/api` (`/api/users/{id}` → `api/users`); `None`
/// for the paths never limited. Found without allocating once a group has
/// been seen: this runs on every request.
fn group_of(path: &str) -> Option<&'static str> {
    /// Groups seen so far: (first segment, second under `/api`, name),
    /// each name leaked once. The routes are a small, fixed set; past 64
    /// groups (random paths), the rest share `other`.
    type Seen = Vec<(Box<str>, Box<str>, &'static str)>;
    static GROUPS: std::sync::LazyLock<std::sync::RwLock<Seen>> =
        std::sync::LazyLock::new(|| std::sync::RwLock::new(Vec::new()));

    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    if first.starts_with("health") || first == "metrics" {
        return None;
    }
    let second = match segments.next() {
        Some(second) if first == "api" => second,
        _ => "",
    };
    let find = |seen: &Seen| {
        seen.iter()
            .find(|(a, b, _)| **a == *first && **b == *second)
            .map(|(_, _, name)| *name)
    };
    if let Some(name) = find(&GROUPS.read().unwrap_or_else(|e| e.into_inner())) {
        return Some(name);
    }
    let mut seen = GROUPS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = find(&seen) {
        return Some(name);
    }
    if seen.len() >= 64 {
        return Some("other");
    }
    let name = if second.is_empty() {
        first.to_owned()
    } else {
        format!("{first}/{second}")
    };
    let name: &'static str = Box::leak(name.into_boxed_str());
    seen.push((first.into(), second.into(), name));
    Some(name)
}

/// The middleware: see the module docs.
pub(crate) async fn limit(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    // The route's template, not the raw path: the groups are then the
    // routes' own, however many paths a scanner tries (those share one).
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("/unmatched", |matched| matched.as_str());
    let Some(group) = group_of(path) else {
        return next.run(req).await;
    };
    let who = match req.extensions().get::<Client>() {
        Some(client) => Who::Client(client.clone()),
        None => Who::Address(
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip()),
        ),
    };
    let burst = limits.cfg.burst.max(1);
    match limits.limiter.check_key(&(who, group)) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let mut response = next.run(req).await;
            let reset = seconds_until_full(burst - remaining.min(burst), limits.cfg.per_second);
            set_headers(response.headers_mut(), burst, remaining, reset);
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests a second (bursts of {burst}) from this client to {group}",
                    limits.cfg.per_second
                ),
            )
            .retry_after(wait.max(Duration::from_secs(1)))
            .into_response();
            let reset = seconds_until_full(burst, limits.cfg.per_second);
            set_headers(response.headers_mut(), burst, 0, reset);
            response
        }
    }
}

/// Whole seconds until `spent` requests have been given back at
/// `per_second`.
fn seconds_until_full(spent: u32, per_second: u32) -> u64 {
    u64::from(spent).div_ceil(u64::from(per_second.max(1)))
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    headers.insert("ratelimit-limit", HeaderValue::from(limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_groups_and_probes_into_none() {
        assert_eq!(group_of("/jobs/weather/1"), Some("jobs"));
        assert_eq!(group_of("/WeatherForecast/city"), Some("WeatherForecast"));
        assert_eq!(group_of("/api/users/7"), Some("api/users"));
        assert_eq!(group_of("/api/users/search"), Some("api/users"));
        assert_eq!(group_of("/api/products"), Some("api/products"));
        assert_eq!(group_of("/health/ready"), None);
        assert_eq!(group_of("/metrics"), None);
        // The same name is the same group, leaked once.
        assert!(std::ptr::eq(
            group_of("/api/orders/1").unwrap(),
            group_of("/api/orders").unwrap()
        ));
    }

    #[test]
    fn the_reset_is_the_time_to_give_back_what_was_spent() {
        assert_eq!(seconds_until_full(0, 10), 0);
        assert_eq!(seconds_until_full(1, 10), 1);
        assert_eq!(seconds_until_full(25, 10), 3);
    }
}
