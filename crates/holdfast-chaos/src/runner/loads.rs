//! The run's loads: three open-model streams at fixed rates (calls, jobs,
//! cache reads), each with a hook that watches its answers for the
//! invariants, and their per-second timelines for the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_load::{Hook, LoadReport, LoadSpec, Mode, Outcome, Stop};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::events::{Clock, STATUS_EVERY};
use crate::report::{LoadSeries, SecondPoint};
use crate::scenario::Scenario;
use crate::stack::Stack;

/// Name of the jobs load, whose accepted ids are counted after the run.
pub(super) const JOBS: &str = "jobs";

/// Name of the cache reads load, whose availability during faults is held.
pub(super) const CACHE_READS: &str = "cache reads";

/// Name of the calls load.
pub(super) const CALLS: &str = "calls";

/// Name of the extra calls of a surge, which run only while it lasts.
pub(super) const SURGE: &str = "surge calls";

/// Fewest requests of one load allowed in flight; beyond its limit requests
/// are sent late (and their latency counts the wait).
const MIN_IN_FLIGHT: usize = 512;

/// Most requests of one load in flight, each on a connection of its own:
/// the loads of a run together stay well below the 4,096 connections a
/// listener takes by default.
const MAX_IN_FLIGHT: usize = 1024;

/// Requests of a load at `rate` allowed in flight: enough, within the
/// bounds above, for every request of the last `late_after` (and a second
/// more) to be outstanding at once, so that a stall of the stack shows as
/// the stack's latency rather than as the load's own queue.
fn max_in_flight(rate: f64, late_after: Duration) -> usize {
    let needed = rate * (late_after.as_secs_f64() + 1.0);
    (needed.ceil() as usize).clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT)
}

/// What one load's hook sees: answers past their deadline, reads during
/// faults, accepted job ids, and running counts for the live line.
pub(super) struct Watch {
    clock: Clock,
    /// An answer slower than this waited past its deadline plus the grace.
    late_after: Duration,
    past_deadline: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    /// Per request: when it was sent (ms since the run started) and whether
    /// it was answered below 400. Kept for the reads load only.
    samples: Option<Mutex<Vec<(u32, bool)>>>,
    /// Job ids of 202 answers, each with the durability its answer
    /// reported (`Holdfast-Durability`); the jobs load only.
    jobs: Option<Mutex<Vec<(String, String)>>>,
    /// Prefix of the idempotency keys of this run's jobs.
    key_prefix: Option<String>,
}

impl Watch {
    fn new(clock: Clock, late_after: Duration) -> Self {
        Self {
            clock,
            late_after,
            past_deadline: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            samples: None,
            jobs: None,
            key_prefix: None,
        }
    }

    /// Answers later than the deadline plus the grace.
    pub(super) fn past_deadline(&self) -> u64 {
        self.past_deadline.load(Ordering::Relaxed)
    }

    /// The reads' samples: when each was sent and whether it was answered
    /// below 400 (empty for the other loads).
    pub(super) fn samples(&self) -> Vec<(u32, bool)> {
        self.samples
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.clone()))
            .unwrap_or_default()
    }

    /// The ids of the accepted jobs, each with the durability reached;
    /// `None` for the other loads.
    pub(super) fn job_ids(&self) -> Option<Vec<(String, String)>> {
        self.jobs
            .as_ref()
            .and_then(|j| j.lock().ok().map(|j| j.clone()))
    }
}

impl Hook for Watch {
    fn prepare(&self, seq: u64, headers: &mut http::HeaderMap) {
        if let Some(prefix) = &self.key_prefix
            && let Ok(value) = http::HeaderValue::from_str(&format!("{prefix}-{seq}"))
        {
            headers.insert("idempotency-key", value);
        }
    }

    fn observe(&self, _seq: u64, outcome: &Outcome<'_>) {
        let (latency, ok) = match outcome {
            Outcome::Answer {
                status,
                headers,
                body,
                latency,
            } => {
                if *status == http::StatusCode::ACCEPTED
                    && let Some(jobs) = &self.jobs
                    && let Ok(v) = serde_json::from_slice::<Value>(body)
                    && let Some(id) = v.get("id").and_then(Value::as_str)
                    && let Ok(mut jobs) = jobs.lock()
                {
                    let reached = headers
                        .get("holdfast-durability")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    jobs.push((id.to_owned(), reached.to_owned()));
                }
                (*latency, status.as_u16() < 400)
            }
            Outcome::Failed { latency, .. } => (*latency, false),
        };
        if latency > self.late_after {
            self.past_deadline.fetch_add(1, Ordering::Relaxed);
        }
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(samples) = &self.samples {
            let sent = self.clock.start.elapsed().saturating_sub(latency);
            if let Ok(mut samples) = samples.lock() {
                samples.push((sent.as_millis() as u32, ok));
            }
        }
    }
}

/// One load of the run, running.
pub(super) struct LoadRun {
    name: &'static str,
    target: String,
    rate: f64,
    watch: Arc<Watch>,
    task: tokio::task::JoinHandle<Result<LoadReport, holdfast_load::LoadError>>,
}

/// A load that ran to its end, with what its hook saw.
pub(super) struct Finished {
    pub(super) name: &'static str,
    pub(super) target: String,
    /// Requests per second it was asked for.
    pub(super) rate: f64,
    pub(super) watch: Arc<Watch>,
    pub(super) report: LoadReport,
}

/// Starts the scenario's loads against `stack`: each runs for the
/// scenario's duration or until `stop`; the surge's extra calls, at
/// `surge_rate`, only within its window.
pub(super) fn start(
    scenario: &Scenario,
    short: bool,
    stack: &Stack,
    clock: Clock,
    stop: &CancellationToken,
    surge_rate: f64,
) -> Vec<LoadRun> {
    let plan = &scenario.load;
    let duration = scenario.duration(short);
    let late_after = plan.deadline + scenario.limits.deadline_grace;
    let request_timeout = late_after + Duration::from_secs(2);
    let json = ("content-type".to_owned(), "application/json".to_owned());
    let spec = |url: String,
                method: http::Method,
                headers: Vec<(String, String)>,
                body: &'static str,
                rate: f64| LoadSpec {
        url,
        method,
        headers,
        body: bytes::Bytes::from_static(body.as_bytes()),
        mode: Mode::Rate {
            per_sec: rate,
            max_in_flight: max_in_flight(rate, late_after),
        },
        stop: Stop {
            requests: None,
            duration: Some(duration),
            cancel: Some(stop.clone()),
        },
        timeout: request_timeout,
        health_check: None,
        progress: false,
    };
    let mut loads = Vec::new();
    let deadline_ms = plan.deadline.as_millis().to_string();
    let mut start_load = |name: &'static str, spec: LoadSpec, rate: f64, watch: Watch| {
        let watch = Arc::new(watch);
        let target = format!("{} {}", spec.method, spec.url);
        let hook: Arc<dyn Hook> = watch.clone();
        loads.push(LoadRun {
            name,
            target,
            rate,
            watch,
            task: tokio::spawn(holdfast_load::run_with(spec, hook)),
        });
    };
    if plan.calls_per_sec > 0.0 {
        start_load(
            CALLS,
            spec(
                format!("{}/WeatherForecast/city", stack.ingress_url),
                http::Method::POST,
                vec![json.clone(), ("x-timeout-ms".into(), deadline_ms.clone())],
                r#"{"city":"Oslo"}"#,
                plan.calls_per_sec,
            ),
            plan.calls_per_sec,
            Watch::new(clock, late_after),
        );
    }
    if plan.jobs_per_sec > 0.0 {
        let mut watch = Watch::new(clock, late_after);
        watch.jobs = Some(Mutex::new(Vec::new()));
        watch.key_prefix = Some(format!("chaos-{}", clock.start_unix_ms));
        start_load(
            JOBS,
            spec(
                format!("{}/jobs/weather", stack.ingress_url),
                http::Method::POST,
                // No deadline header: a job keeps the ingress's own (an
                // hour), since it is meant to wait out an outage queued.
                vec![json.clone()],
                r#"{"city":"Bergen"}"#,
                plan.jobs_per_sec,
            ),
            plan.jobs_per_sec,
            watch,
        );
    }
    if plan.reads_per_sec > 0.0 {
        let mut watch = Watch::new(clock, late_after);
        watch.samples = Some(Mutex::new(Vec::new()));
        start_load(
            CACHE_READS,
            spec(
                format!("{}/api/products/1", stack.api_url),
                http::Method::GET,
                Vec::new(),
                "",
                plan.reads_per_sec,
            ),
            plan.reads_per_sec,
            watch,
        );
    }
    if let Some(surge) = plan.surge.as_ref().filter(|_| surge_rate > 0.0) {
        let (at, lasts) = surge.window(short);
        let mut spec = spec(
            format!("{}/WeatherForecast/city", stack.ingress_url),
            http::Method::POST,
            vec![json.clone(), ("x-timeout-ms".into(), deadline_ms.clone())],
            r#"{"city":"Oslo"}"#,
            surge_rate,
        );
        spec.stop.duration = Some(lasts);
        let watch = Arc::new(Watch::new(clock, late_after));
        let target = format!("{} {}", spec.method, spec.url);
        let hook: Arc<dyn Hook> = watch.clone();
        let starts = clock.start + at;
        let stop_surge = stop.clone();
        loads.push(LoadRun {
            name: SURGE,
            target,
            rate: surge_rate,
            watch,
            task: tokio::spawn(async move {
                // Ended before its window: the load sees `stop` cancelled
                // and returns at once.
                tokio::select! {
                    _ = tokio::time::sleep_until(starts.into()) => {}
                    _ = stop_surge.cancelled() => {}
                }
                holdfast_load::run_with(spec, hook).await
            }),
        });
    }
    loads
}

/// Waits for every load to end; the first that fails cancels the rest
/// through `stop` and is the error.
pub(super) async fn finish(
    loads: Vec<LoadRun>,
    stop: &CancellationToken,
) -> Result<Vec<Finished>, RunError> {
    let mut finished = Vec::new();
    for load in loads {
        let report = match load.task.await {
            Ok(Ok(report)) => report,
            Ok(Err(source)) => {
                stop.cancel();
                return Err(RunError::Load {
                    name: load.name.into(),
                    source,
                });
            }
            Err(join) => {
                stop.cancel();
                return Err(RunError::LoadPanicked {
                    name: load.name.into(),
                    message: join.to_string(),
                });
            }
        };
        finished.push(Finished {
            name: load.name,
            target: load.target,
            rate: load.rate,
            watch: load.watch,
            report,
        });
    }
    Ok(finished)
}

/// Starts printing one line of figures per load every few seconds; the
/// task ends at `stop`.
pub(super) fn print_status(
    loads: &[LoadRun],
    clock: Clock,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let watches: Vec<(&'static str, Arc<Watch>)> =
        loads.iter().map(|l| (l.name, l.watch.clone())).collect();
    tokio::spawn(async move {
        let mut before: Vec<(u64, u64)> = vec![(0, 0); watches.len()];
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STATUS_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            let mut line = String::new();
            for ((name, watch), prev) in watches.iter().zip(before.iter_mut()) {
                let ok = watch.ok.load(Ordering::Relaxed);
                let errors = watch.errors.load(Ordering::Relaxed);
                let secs = STATUS_EVERY.as_secs_f64();
                line.push_str(&format!(
                    " | {name}: {:.0} ok/s, {:.0} err/s",
                    (ok - prev.0) as f64 / secs,
                    (errors - prev.1) as f64 / secs
                ));
                *prev = (ok, errors);
            }
            eprintln!(
                "[{:>6.1}s] load      {}",
                clock.seconds(),
                line.trim_start_matches(" | ")
            );
        }
    })
}

/// The report's view of one load: its figures, and its timeline on the
/// run's clock.
pub(super) fn series_of(load: &Finished, clock: &Clock) -> LoadSeries {
    let report = &load.report;
    // The load's own seconds start when its first request was due, a few
    // milliseconds after the run's clock; shift them onto the run's.
    let offset = report
        .started_at_unix_ms
        .saturating_sub(clock.start_unix_ms)
        / 1000;
    LoadSeries {
        name: load.name.to_owned(),
        target: load.target.clone(),
        requests: report.requests,
        ok: report.ok,
        errors: report.errors,
        rps: report.rps,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
        max_ms: report.max_ms,
        // The last, partial second would read as a drop in throughput.
        timeline: report
            .timeline
            .iter()
            .filter(|s| (s.second as f64) < report.duration_s.floor())
            .map(|s| SecondPoint {
                second: s.second + offset,
                requests: s.requests,
                ok: s.ok,
                errors: s.errors,
                p99_ms: s.p99_ms,
            })
            .collect(),
    }
}
