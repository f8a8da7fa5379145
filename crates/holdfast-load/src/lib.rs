//! HTTP load generator: sends HTTP/1.1 requests at a target and reports what
//! came back, for benchmarks and chaos scenarios.
//!
//! How the parts fit:
//! - [`LoadSpec`] says what to send ([`Mode`]: closed or open model) and when
//!   to stop ([`Stop`]). [`run`] / [`run_with`] validate it, optionally wait
//!   for a [`HealthCheck`], then start one *slot* per in-flight request.
//! - A slot (`engine`) owns one keep-alive connection (`conn`) and sends its
//!   requests on it one after another, building each from a prepared
//!   template. It records latencies in its own HDR histogram, so the hot path
//!   takes no lock; the histograms are merged when the run ends.
//! - The per-second [`Second`] records (`timeline`) are built from small
//!   per-slot accumulators flushed about once a second; a second that no slot
//!   can still add to is reduced to its record, so memory grows with the
//!   run's length in seconds, never with its number of requests.
//! - A [`Hook`] sees every request before it is sent and its [`Outcome`]
//!   after, e.g. to add an `Idempotency-Key` or to check answers.
//! - [`LoadReport`] is the result; [`LoadReport::summary_json`] is the
//!   stable subset that `holdfast load --json` prints.

mod conn;
mod engine;
mod health;
mod progress;
mod report;
mod target;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

pub use health::wait_healthy;
pub use report::{LoadReport, Second};

/// Everything one load run needs: what to send, how, and when to stop.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Target URL; `http://` only (there is no TLS client).
    pub url: String,
    /// Request method.
    pub method: http::Method,
    /// Extra request headers as `(name, value)`; a `Host` given here
    /// replaces the one taken from the URL.
    pub headers: Vec<(String, String)>,
    /// Request body, shared by every request (cloning `Bytes` is cheap).
    pub body: Bytes,
    /// Closed or open model.
    pub mode: Mode,
    /// When the run ends.
    pub stop: Stop,
    /// Per request, connecting included. Past it the request counts as a
    /// failure of kind [`FailureKind::Timeout`] and its connection is
    /// replaced.
    pub timeout: Duration,
    /// Polled before the run starts; the run fails if it never turns healthy.
    pub health_check: Option<HealthCheck>,
    /// Show a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

/// How requests are issued.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// One request at a time on one connection.
    Sequential,
    /// Closed model: this many slots, each sending its next request as soon
    /// as the previous one is answered.
    Concurrency(usize),
    /// Open model: request `i` is due at `start + i / per_sec`, whatever the
    /// answers do. At most `max_in_flight` requests (and connections) are
    /// outstanding; when all are busy, due requests are sent late and their
    /// latency is measured from when they were due (coordinated-omission
    /// correction, as wrk2 does).
    Rate {
        /// Requests per second.
        per_sec: f64,
        /// Upper bound on outstanding requests and connections.
        max_in_flight: usize,
    },
}

/// When the run ends: the first condition reached. At least one must be set.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    /// After this many requests.
    pub requests: Option<u64>,
    /// After this long since the start (requests in flight then still finish
    /// or time out).
    pub duration: Option<Duration>,
    /// When this token is cancelled (requests in flight still finish or time
    /// out).
    pub cancel: Option<CancellationToken>,
}

/// A readiness probe run before the load starts.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// URL polled with `GET` every 200 ms until it answers 2xx.
    pub url: String,
    /// How long to keep polling before giving up with
    /// [`LoadError::Unhealthy`].
    pub timeout: Duration,
}

/// Sees every request of a run. Called on the hot path: keep it cheap.
pub trait Hook: Send + Sync + 'static {
    /// Before each request is sent: may add headers (e.g. a unique
    /// Idempotency-Key per request). `seq` is unique within the run.
    fn prepare(&self, _seq: u64, _headers: &mut http::HeaderMap) {}
    /// After each request, with its outcome.
    fn observe(&self, _seq: u64, _outcome: &Outcome<'_>) {}
}

/// What happened to one request.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The server answered (any status).
    Answer {
        /// Response status.
        status: http::StatusCode,
        /// Response headers.
        headers: &'a http::HeaderMap,
        /// The whole response body.
        body: &'a Bytes,
        /// From send (or, in rate mode, from when it was due) to the end of
        /// the body.
        latency: Duration,
    },
    /// No answer.
    Failed {
        /// Why.
        kind: FailureKind,
        /// Until the failure was noticed.
        latency: Duration,
    },
}

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The TCP connection (or the HTTP handshake) could not be made.
    Connect,
    /// No complete answer within [`LoadSpec::timeout`].
    Timeout,
    /// The connection broke while sending or receiving.
    Io,
}

impl FailureKind {
    /// All kinds, in the order of their index.
    pub const ALL: [FailureKind; 3] = [FailureKind::Connect, FailureKind::Timeout, FailureKind::Io];

    /// Stable lowercase name, the key in [`LoadReport::failures`].
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Io => "io",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run could not start. Errors of individual requests are data in the
/// [`LoadReport`], never a `LoadError`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The spec is inconsistent (no stop condition, zero concurrency, a bad
    /// header...).
    #[error("invalid load spec: {0}")]
    InvalidSpec(String),
    /// The host name did not resolve.
    #[error("could not resolve {host}: {source}")]
    Resolve {
        /// Host and port.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The health check never passed within its timeout.
    #[error("{url} was not healthy in time (last attempt: {last})")]
    Unhealthy {
        /// The health URL.
        url: String,
        /// What the last attempt saw.
        last: String,
    },
}

impl LoadError {
    /// Whether trying again later may succeed (the target may come up); a
    /// bad URL or spec will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LoadError::Resolve { .. } | LoadError::Unhealthy { .. }
        )
    }
}

/// The hook used by [`run`]: does nothing.
struct NoHook;
impl Hook for NoHook {}

/// Runs a load and reports what came back.
pub async fn run(spec: LoadSpec) -> Result<LoadReport, LoadError> {
    run_with(spec, Arc::new(NoHook)).await
}

/// Runs a load, calling `hook` before and after every request.
pub async fn run_with(spec: LoadSpec, hook: Arc<dyn Hook>) -> Result<LoadReport, LoadError> {
    let plan = engine::Plan::new(&spec).await?;
    if let Some(check) = &spec.health_check {
        wait_healthy(&check.url, check.timeout, |status| status.is_success()).await?;
    }
    Ok(engine::execute(plan, hook).await)
}
