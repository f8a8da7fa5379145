//! Loop tests: a bounded load at the stack from the dashboard, on the
//! `holdfast-load` engine, with live progress.
//!
//! A loop test sends `count` requests (at most [`MAX_COUNT`]) of one kind
//! (a weather call through the ingress, a product read or a user search
//! through the api) with a concurrency (closed model) or a rate (open
//! model). Memory stays bounded whatever the count: the engine keeps one
//! record per second, and the progress here is a few counters and a
//! fixed-size latency histogram of atomics, updated without a lock. One
//! test runs at a time (409 otherwise), so one person's test cannot pile up
//! on another's; it can be cancelled; the last [`KEPT_RUNS`] are listed with
//! their summary.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes as Body;
use holdfast_core::Deadline;
use holdfast_load::{Hook, LoadReport, LoadSpec, Mode, Outcome, Stop};
use holdfast_resilience::Tasks;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::guard::Authorized;
use super::{AppState, html};
use crate::problem::ApiError;
use crate::problem::responses::{ActionProblems, Conflict, NotFound, UnprocessableEntity};

/// Most requests one loop test sends.
pub const MAX_COUNT: u64 = 10_000_000;

/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 256;

/// Highest rate of the open model, requests per second.
pub const MAX_RATE: f64 = 50_000.0;

/// Past loop tests listed.
pub const KEPT_RUNS: usize = 20;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a loop test sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LoopTarget {
    /// `POST /WeatherForecast/city` through the ingress (a call over the
    /// streams to a worker).
    Weather,
    /// `GET /api/products/{id}` through the api's cache.
    Product,
    /// `GET /api/users/search?q=…` on the api (the database).
    UserSearch,
}

/// A loop test to start.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopRequest {
    /// What to send.
    pub target: LoopTarget,
    /// How many requests, 1 to 10,000,000.
    pub count: u64,
    /// Requests in flight at once (closed model), 1 to 256; default 8
    /// unless `rate_per_s` is given.
    pub concurrency: Option<usize>,
    /// Requests per second (open model) instead of a concurrency.
    pub rate_per_s: Option<f64>,
    /// The product read (default 1).
    pub product_id: Option<u64>,
    /// The search text (default `a`).
    pub query: Option<String>,
    /// Per-request timeout in milliseconds (default 15000).
    pub timeout_ms: Option<u64>,
}

/// A loop test as the dashboard shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LoopRun {
    /// Its id.
    pub id: u64,
    /// What it sends.
    pub target: LoopTarget,
    /// Where.
    pub url: String,
    /// Requests to send.
    pub count: u64,
    /// Its concurrency, if closed model.
    pub concurrency: Option<usize>,
    /// Its rate, if open model.
    pub rate_per_s: Option<f64>,
    /// `running`, `finished`, `cancelled` or `failed`.
    pub state: String,
    /// Requests completed so far.
    pub done: u64,
    /// Of which answered below 400.
    pub ok: u64,
    /// Of which answered 400 and above, or not at all.
    pub errors: u64,
    /// Completed requests per second so far.
    pub rate_now: f64,
    /// 99th percentile latency so far, milliseconds (about 12 % precision
    /// while it runs; the engine's exact figure once finished).
    pub p99_ms: Option<f64>,
    /// When it started, Unix milliseconds.
    pub started_at_unix_ms: u64,
    /// When it ended.
    pub finished_at_unix_ms: Option<u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The engine's summary once it ended: rps, p50/p90/p99/p999/max,
    /// status counts, failures.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
}

/// Latency buckets: 8 per power of two of microseconds.
const BUCKETS: usize = 8 * 40;

/// Counters a running test updates on every answer, without a lock.
struct Progress {
    done: AtomicU64,
    ok: AtomicU64,
    latency: Vec<AtomicU64>,
}

fn bucket(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros() as usize;
    let sub = ((us >> (power - 3)) & 7) as usize;
    ((power - 3) * 8 + 8 + sub).min(BUCKETS - 1)
}

/// The highest latency a bucket holds, microseconds.
fn bucket_top(index: usize) -> u64 {
    if index < 8 {
        return index as u64;
    }
    let power = (index - 8) / 8 + 3;
    let sub = ((index - 8) % 8) as u64;
    ((8 + sub + 1) << (power - 3)) - 1
}

impl Progress {
    fn new() -> Self {
        Self {
            done: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn p99_ms(&self) -> Option<f64> {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_top(i) as f64 / 1000.0);
            }
        }
        None
    }
}

struct ProgressHook(Arc<Progress>);

impl Hook for ProgressHook {
    fn observe(&self, _seq: u64, outcome: &Outcome<'_>) {
        let (ok, latency) = match outcome {
            Outcome::Answer {
                status, latency, ..
            } => (status.as_u16() < 400, *latency),
            Outcome::Failed { latency, .. } => (false, *latency),
        };
        let p = &self.0;
        p.done.fetch_add(1, Ordering::Relaxed);
        if ok {
            p.ok.fetch_add(1, Ordering::Relaxed);
        }
        p.latency[bucket(latency.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }
}

/// One loop test, running or ended.
struct Slot {
    run: Mutex<LoopRun>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

impl Slot {
    fn view(&self) -> LoopRun {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if run.state == "running" {
            run.done = self.progress.done.load(Ordering::Relaxed);
            run.ok = self.progress.ok.load(Ordering::Relaxed);
            run.errors = run.done - run.ok.min(run.done);
            let elapsed_s =
                Deadline::now_unix_ms().saturating_sub(run.started_at_unix_ms) as f64 / 1000.0;
            run.rate_now = if elapsed_s > 0.0 {
                run.done as f64 / elapsed_s
            } else {
                0.0
            };
            run.p99_ms = self.progress.p99_ms();
        }
        run
    }

    fn finish(&self, result: Result<LoadReport, String>) {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        run.finished_at_unix_ms = Some(Deadline::now_unix_ms());
        match result {
            Ok(report) => {
                run.state = if self.cancel.is_cancelled() {
                    "cancelled".into()
                } else {
                    "finished".into()
                };
                run.done = report.requests;
                run.ok = report.ok;
                run.errors = report.errors;
                run.rate_now = report.rps;
                run.p99_ms = Some(report.p99_ms);
                run.summary = Some(report.summary_json());
            }
            Err(err) => {
                run.state = "failed".into();
                run.error = Some(err);
                run.done = self.progress.done.load(Ordering::Relaxed);
                run.ok = self.progress.ok.load(Ordering::Relaxed);
                run.errors = run.done - run.ok.min(run.done);
            }
        }
    }
}

/// The dashboard's loop tests.
pub struct LoopTests {
    runs: Mutex<VecDeque<Arc<Slot>>>,
    next_id: AtomicU64,
    tasks: Tasks,
}

impl LoopTests {
    /// None yet; tests run on `tasks`, which stop them when the dashboard
    /// stops.
    pub fn new(tasks: Tasks) -> Self {
        Self {
            runs: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            tasks,
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Slot>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every test kept, newest first.
    pub fn list(&self) -> Vec<LoopRun> {
        self.runs().iter().rev().map(|s| s.view()).collect()
    }

    fn find(&self, id: u64) -> Option<Arc<Slot>> {
        self.runs()
            .iter()
            .find(|s| s.run.lock().map(|r| r.id == id).unwrap_or(false))
            .cloned()
    }

    /// Starts a test at `url`.
    fn start(&self, request: &LoopRequest, url: String) -> Result<LoopRun, ApiError> {
        let mode = match (request.concurrency, request.rate_per_s) {
            (Some(_), Some(_)) => {
                return Err(ApiError::unprocessable(
                    "invalid_loop_test",
                    "give a concurrency or a rate, not both",
                ));
            }
            (_, Some(rate)) if !(rate > 0.0 && rate <= MAX_RATE) => {
                return Err(ApiError::unprocessable(
                    "invalid_loop_test",
                    format!("rate_per_s must be above 0 and at most {MAX_RATE}"),
                ));
            }
            (_, Some(rate)) => Mode::Rate {
                per_sec: rate,
                max_in_flight: MAX_CONCURRENCY,
            },
            (Some(n), None) if n == 0 || n > MAX_CONCURRENCY => {
                return Err(ApiError::unprocessable(
                    "invalid_loop_test",
                    format!("concurrency must be 1 to {MAX_CONCURRENCY}"),
                ));
            }
            (n, None) => Mode::Concurrency(n.unwrap_or(8)),
        };
        if request.count == 0 || request.count > MAX_COUNT {
            return Err(ApiError::unprocessable(
                "invalid_loop_test",
                format!("count must be 1 to {MAX_COUNT}"),
            ));
        }
        let timeout = request
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
            .clamp(Duration::from_millis(10), Duration::from_secs(120));
        let (method, headers, body) = match request.target {
            LoopTarget::Weather => (
                http::Method::POST,
                vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("x-timeout-ms".to_owned(), timeout.as_millis().to_string()),
                ],
                Body::from_static(br#"{"city": "New York", "location": "Downtown"}"#),
            ),
            _ => (http::Method::GET, Vec::new(), Body::new()),
        };
        let mut runs = self.runs();
        if runs.iter().any(|s| s.view().state == "running") {
            return Err(ApiError::conflict(
                "loop_test_running",
                "a loop test is running; cancel it or wait for it to end",
            ));
        }
        let cancel = CancellationToken::new();
        let spec = LoadSpec {
            url: url.clone(),
            method,
            headers,
            body,
            mode,
            stop: Stop {
                requests: Some(request.count),
                duration: None,
                cancel: Some(cancel.clone()),
            },
            timeout,
            health_check: None,
            progress: false,
        };
        let run = LoopRun {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            target: request.target,
            url,
            count: request.count,
            concurrency: match spec.mode {
                Mode::Concurrency(n) => Some(n),
                _ => None,
            },
            rate_per_s: request.rate_per_s,
            state: "running".into(),
            done: 0,
            ok: 0,
            errors: 0,
            rate_now: 0.0,
            p99_ms: None,
            started_at_unix_ms: Deadline::now_unix_ms(),
            finished_at_unix_ms: None,
            error: None,
            summary: None,
        };
        let slot = Arc::new(Slot {
            run: Mutex::new(run.clone()),
            progress: Arc::new(Progress::new()),
            cancel: cancel.clone(),
        });
        if runs.len() == KEPT_RUNS {
            runs.pop_front();
        }
        runs.push_back(slot.clone());
        drop(runs);
        let stop = self.tasks.stop_token();
        self.tasks.spawn(async move {
            let hook = Arc::new(ProgressHook(slot.progress.clone()));
            let stopping = stop.clone();
            let cancel_on_stop = slot.cancel.clone();
            // The dashboard stopping cancels the test.
            let watcher = tokio::spawn(async move {
                stopping.cancelled().await;
                cancel_on_stop.cancel();
            });
            let result = holdfast_load::run_with(spec, hook)
                .await
                .map_err(|err| err.to_string());
            watcher.abort();
            slot.finish(result);
        });
        tracing::info!(id = run.id, target = ?run.target, count = run.count, "loop test started");
        Ok(run)
    }
}

/// Where a loop test of `target` goes, from the registry.
fn url_of(shared: &AppState, request: &LoopRequest) -> Result<String, ApiError> {
    let role = match request.target {
        LoopTarget::Weather => "ingress",
        _ => "api",
    };
    let base = shared
        .reader
        .first_of(role)
        .and_then(|i| i.public_url)
        .ok_or_else(|| {
            ApiError::conflict(
                "no_target",
                format!("no {role} instance is registered: nothing to send the loop test to"),
            )
        })?;
    Ok(match request.target {
        LoopTarget::Weather => format!("{base}/WeatherForecast/city"),
        LoopTarget::Product => format!("{base}/api/products/{}", request.product_id.unwrap_or(1)),
        LoopTarget::UserSearch => {
            let q = request.query.clone().unwrap_or_else(|| "a".into());
            reqwest::Url::parse_with_params(&format!("{base}/api/users/search"), &[("q", q)])
                .map_err(|err| ApiError::unprocessable("invalid_loop_test", err.to_string()))?
                .to_string()
        }
    })
}

/// Starts a loop test.
///
/// 409 `loop_test_running` (one at a time) or `no_target` (no ingress or
/// api registered); 422 `invalid_loop_test` (values out of range) or
/// `invalid_body` (not a loop test).
#[utoipa::path(
    post,
    path = "/api/dashboard/loop-tests",
    tag = "loop tests",
    request_body(content = LoopRequest, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 202, description = "Started", body = LoopRun),
        ActionProblems,
        Conflict,
        UnprocessableEntity,
    )
)]
pub(super) async fn start(
    State(shared): State<AppState>,
    Authorized(request): Authorized<Option<LoopRequest>>,
) -> Result<Response, ApiError> {
    let request = request.ok_or_else(|| {
        ApiError::unprocessable("invalid_loop_test", "the body names the loop test to run")
    })?;
    let url = url_of(&shared, &request)?;
    let run = shared.loops.start(&request, url)?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// Every loop test kept, newest first.
#[utoipa::path(
    get,
    path = "/api/dashboard/loop-tests",
    tag = "loop tests",
    responses((status = 200, description = "Newest first", body = [LoopRun]))
)]
pub(super) async fn list(State(shared): State<AppState>) -> Response {
    Json(shared.loops.list()).into_response()
}

/// One loop test, with its progress.
#[utoipa::path(
    get,
    path = "/api/dashboard/loop-tests/{id}",
    tag = "loop tests",
    params(("id" = u64, Path, description = "Its id")),
    responses(
        (status = 200, description = "The test and its progress", body = LoopRun),
        NotFound,
    )
)]
pub(super) async fn one(
    State(shared): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let slot = shared
        .loops
        .find(id)
        .ok_or_else(|| ApiError::not_found(format!("no loop test {id}")))?;
    Ok(Json(slot.view()).into_response())
}

/// Cancels a running loop test: requests in flight finish.
#[utoipa::path(
    post,
    path = "/api/dashboard/loop-tests/{id}/cancel",
    tag = "loop tests",
    params(("id" = u64, Path, description = "Its id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "Cancelling; the test ends once its requests in flight are answered", body = LoopRun),
        ActionProblems,
        NotFound,
    )
)]
pub(super) async fn cancel(
    State(shared): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    shared.guard.check(&headers, false)?;
    let slot = shared
        .loops
        .find(id)
        .ok_or_else(|| ApiError::not_found(format!("no loop test {id}")).into_response())?;
    slot.cancel.cancel();
    Ok(Json(slot.view()).into_response())
}

/// The loop tests page.
#[derive(Template)]
#[template(path = "loops.html")]
struct LoopsPage {
    nav: &'static str,
    can_act: bool,
    runs: Vec<LoopRun>,
    max_count: u64,
    max_concurrency: usize,
}

impl LoopsPage {
    fn number(&self, value: &Option<f64>) -> String {
        value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
    }
}

pub(super) async fn page(State(shared): State<AppState>) -> Response {
    html(&LoopsPage {
        nav: "loops",
        can_act: shared.guard.has_token(),
        runs: shared.loops.list(),
        max_count: MAX_COUNT,
        max_concurrency: MAX_CONCURRENCY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_hold_their_values_within_an_eighth() {
        for us in [
            0, 1, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 1_000_000, 60_000_000,
        ] {
            let i = bucket(us);
            let top = bucket_top(i);
            assert!(top >= us, "{us} in bucket {i} topped at {top}");
            assert!(
                top as f64 <= us as f64 * 1.125 + 1.0,
                "{us} in bucket {i} topped at {top}"
            );
            if i > 0 {
                assert!(bucket_top(i - 1) < us, "{us} belongs to an earlier bucket");
            }
        }
    }

    #[test]
    fn the_p99_so_far_is_read_from_the_buckets() {
        let progress = Progress::new();
        for _ in 0..99 {
            progress.latency[bucket(1_000)].fetch_add(1, Ordering::Relaxed);
        }
        progress.latency[bucket(500_000)].fetch_add(1, Ordering::Relaxed);
        let p99 = progress.p99_ms().unwrap();
        assert!((1.0..1.2).contains(&p99), "{p99}");
    }
}
