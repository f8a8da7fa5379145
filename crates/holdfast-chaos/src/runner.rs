//! Runs a scenario: starts the stack, runs the loads, plays the faults,
//! watches every role's health, then checks the invariants and writes the
//! report.
//!
//! The loads are open-model (fixed rates, latency measured from when each
//! request was due), so a stall shows as latency and errors rather than as
//! fewer requests. Three run at once: calls (`POST /WeatherForecast/city`,
//! with a deadline), jobs (`POST /jobs/weather`, each with its own
//! idempotency key) and cache reads (`GET /api/products/1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast_core::{Keys, Topic};
use holdfast_load::{Hook, LoadReport, LoadSpec, Mode, Outcome, Stop};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use crate::report::{
    Compare, Event, FaultWindow, InvariantResult, LoadSeries, RunReport, SecondPoint,
};
use crate::scenario::{FaultAction, FaultStep, ProxyTarget, Scenario};
use crate::stack::{Stack, StackError};

/// How often each role's `/health` is read.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// How often a line of figures is printed while the load runs.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Most requests of one load in flight; beyond it requests are sent late
/// (and their latency counts the wait).
const MAX_IN_FLIGHT: usize = 512;

/// A second counts as recovered when every load answered at least this
/// share of its rate without errors.
const RECOVERED_SHARE: f64 = 0.8;

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The CI form: shorter load and faults.
    pub short: bool,
    /// Where each run gets a directory of its own.
    pub report_dir: PathBuf,
    /// The `holdfast` binary that runs the roles.
    pub bin: PathBuf,
    /// Print events and figures to stderr as they happen.
    pub live: bool,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The report.
    pub report: RunReport,
    /// `report.json`.
    pub json_path: PathBuf,
    /// `report.html`.
    pub html_path: PathBuf,
}

/// Why a run could not be made (a failed invariant is not an error: it is
/// in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The stack did not start.
    #[error("the stack did not start: {0}")]
    Stack(#[from] StackError),
    /// A load could not run.
    #[error("load {name}: {source}")]
    Load {
        /// Which load.
        name: String,
        /// Why.
        source: holdfast_load::LoadError,
    },
    /// A load's task ended without a report.
    #[error("load {name} stopped: {message}")]
    LoadPanicked {
        /// Which load.
        name: String,
        /// What the runtime said.
        message: String,
    },
    /// Writing the report failed.
    #[error("writing the report in {}: {source}", dir.display())]
    Report {
        /// The run's directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Stopped by a signal.
    #[error("interrupted")]
    Interrupted,
}

/// Seconds since the run started, for every timestamp of the report.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    start_unix_ms: u64,
}

impl Clock {
    fn now() -> Self {
        Self {
            start: Instant::now(),
            start_unix_ms: unix_ms(),
        }
    }

    fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The events of the run, printed as they come when `live`.
#[derive(Clone)]
struct Events {
    clock: Clock,
    live: bool,
    list: Arc<Mutex<Vec<Event>>>,
}

impl Events {
    fn push(&self, source: &str, what: impl Into<String>) {
        let at_s = self.clock.seconds();
        let what = what.into();
        if self.live {
            eprintln!("[{at_s:>6.1}s] {source:<10} {what}");
        }
        if let Ok(mut list) = self.list.lock() {
            list.push(Event {
                at_s,
                source: source.to_owned(),
                what,
            });
        }
    }

    fn take(&self) -> Vec<Event> {
        self.list
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// What one load's hook sees: answers past their deadline, reads during
/// faults, accepted job ids, and running counts for the live line.
struct Watch {
    clock: Clock,
    /// An answer slower than this waited past its deadline plus the grace.
    late_after: Duration,
    past_deadline: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    /// Per request: when it was sent (ms since the run started) and whether
    /// it was answered below 400. Kept for the reads load only.
    samples: Option<Mutex<Vec<(u32, bool)>>>,
    /// Job ids of 202 answers; the jobs load only.
    jobs: Option<Mutex<Vec<String>>>,
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
                body,
                latency,
                ..
            } => {
                if *status == http::StatusCode::ACCEPTED
                    && let Some(jobs) = &self.jobs
                    && let Ok(v) = serde_json::from_slice::<Value>(body)
                    && let Some(id) = v.get("id").and_then(Value::as_str)
                    && let Ok(mut jobs) = jobs.lock()
                {
                    jobs.push(id.to_owned());
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

/// One load of the run.
struct LoadRun {
    name: &'static str,
    target: String,
    rate: f64,
    watch: Arc<Watch>,
    task: tokio::task::JoinHandle<Result<LoadReport, holdfast_load::LoadError>>,
}

/// A load that ran to its end, with what its hook saw.
struct Finished {
    name: &'static str,
    target: String,
    rate: f64,
    watch: Arc<Watch>,
    report: LoadReport,
}

/// Runs `scenario` and writes its report; a failed invariant is in the
/// report's `passed`, not an error.
pub async fn run(
    scenario: &Scenario,
    opts: &RunOptions,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let dir = opts
        .report_dir
        .join(format!("{}-{}", scenario.name, unix_ms()));
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Report {
        dir: dir.clone(),
        source,
    })?;
    if opts.live {
        eprintln!(
            "chaos: {} ({}), starting the stack; logs in {}",
            scenario.name,
            if opts.short {
                "short form"
            } else {
                "full form"
            },
            dir.join("logs").display()
        );
    }
    let stack = Stack::start(&opts.bin, &scenario.stack, &dir).await?;
    let result = run_on(scenario, opts, &dir, stack, shutdown).await;
    if let Err(e) = &result
        && opts.live
    {
        eprintln!(
            "chaos: run failed: {e}; logs in {}",
            dir.join("logs").display()
        );
    }
    result
}

async fn run_on(
    scenario: &Scenario,
    opts: &RunOptions,
    dir: &Path,
    stack: Stack,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let duration = scenario.duration(opts.short);
    let plan = &scenario.load;
    let limits = &scenario.limits;
    let clock = Clock::now();
    let events = Events {
        clock,
        live: opts.live,
        list: Arc::new(Mutex::new(Vec::new())),
    };
    events.push(
        "runner",
        format!(
            "stack ready: ingress {}, api {}, redis port {}",
            stack.ingress_url,
            stack.api_url,
            stack.redis.port()
        ),
    );
    let watchers = CancellationToken::new();
    for role in stack.roles() {
        tokio::spawn(watch_health(
            role.name.clone(),
            format!("http://{}/health", role.admin),
            events.clone(),
            watchers.clone(),
        ));
    }

    let stop_loads = shutdown.child_token();
    let late_after = plan.deadline + limits.deadline_grace;
    let request_timeout = late_after + Duration::from_secs(2);
    let deadline_ms = plan.deadline.as_millis().to_string();
    let run_tag = format!("chaos-{}", clock.start_unix_ms);
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
            max_in_flight: MAX_IN_FLIGHT,
        },
        stop: Stop {
            requests: None,
            duration: Some(duration),
            cancel: Some(stop_loads.clone()),
        },
        timeout: request_timeout,
        health_check: None,
        progress: false,
    };
    let mut loads = Vec::new();
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
            "calls",
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
        watch.key_prefix = Some(run_tag.clone());
        start_load(
            "jobs",
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
            "cache reads",
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
    if opts.live {
        tokio::spawn(print_status(
            loads.iter().map(|l| (l.name, l.watch.clone())).collect(),
            clock,
            stop_loads.clone(),
        ));
    }

    let stack = Arc::new(AsyncMutex::new(stack));
    let windows = Arc::new(Mutex::new(Vec::<(usize, FaultWindow)>::new()));
    let mut fault_tasks = Vec::new();
    for (index, step) in scenario.faults.iter().enumerate() {
        fault_tasks.push(tokio::spawn(play_fault(
            index,
            step.clone(),
            opts.short,
            clock,
            stack.clone(),
            events.clone(),
            windows.clone(),
            stop_loads.clone(),
        )));
    }

    let mut reports = Vec::new();
    for load in loads {
        let report = match load.task.await {
            Ok(Ok(report)) => report,
            Ok(Err(source)) => {
                stop_loads.cancel();
                return Err(RunError::Load {
                    name: load.name.into(),
                    source,
                });
            }
            Err(join) => {
                stop_loads.cancel();
                return Err(RunError::LoadPanicked {
                    name: load.name.into(),
                    message: join.to_string(),
                });
            }
        };
        reports.push(Finished {
            name: load.name,
            target: load.target,
            rate: load.rate,
            watch: load.watch,
            report,
        });
    }
    stop_loads.cancel();
    for task in fault_tasks {
        let _ = task.await;
    }
    if shutdown.is_cancelled() {
        watchers.cancel();
        stop_stack(stack).await;
        return Err(RunError::Interrupted);
    }
    let load_end_s = clock.seconds();

    // Every worker runs again before the jobs are counted.
    {
        let mut stack = stack.lock().await;
        for i in 0..stack.workers.len() {
            if !stack.workers[i].is_running() {
                let _ = stack.restart_worker(i).await;
                events.push(&stack.workers[i].name.clone(), "restarted after the load");
            }
        }
    }

    let (ingress_url, redis_url) = {
        let stack = stack.lock().await;
        (stack.ingress_url.clone(), stack.redis.url())
    };
    let mut invariants = Vec::new();
    let jobs_watch = reports
        .iter()
        .find(|r| r.name == "jobs")
        .and_then(|r| r.watch.jobs.as_ref())
        .and_then(|j| j.lock().ok().map(|j| j.clone()));
    if let Some(ids) = jobs_watch {
        if opts.live {
            eprintln!(
                "chaos: load done; waiting for {} accepted jobs to finish",
                ids.len()
            );
        }
        let tally = settle_jobs(&ingress_url, ids, plan.settle).await;
        let durability = scenario.stack.durability;
        let strict = durability.promises_no_loss();
        invariants.push(InvariantResult {
            name: "accepted_jobs_lost".into(),
            value: tally.lost() as f64,
            limit: if strict { 0.0 } else { tally.accepted as f64 },
            compare: Compare::AtMost,
            ok: !strict || tally.lost() == 0,
            unit: "count".into(),
            detail: format!(
                "{} jobs accepted (202); {} done, {} failed, {} expired, {} dead-lettered, {} \
                 unknown (record gone), {} never finished within {:?} after the load. \
                 Durability: appendfsync {}{}",
                tally.accepted,
                tally.done,
                tally.failed,
                tally.expired,
                tally.dead,
                tally.missing,
                tally.pending,
                plan.settle,
                durability.as_str(),
                if strict {
                    ""
                } else {
                    " (reported, not held to 0 at this level)"
                }
            ),
        });
        let effects = read_effects(&redis_url).await;
        invariants.push(InvariantResult {
            name: "duplicate_effects".into(),
            value: effects.duplicated as f64,
            limit: 0.0,
            compare: Compare::AtMost,
            ok: effects.duplicated == 0 && effects.read,
            unit: "count".into(),
            detail: if effects.read {
                format!(
                    "idempotency keys whose effect was applied more than once; {} effects \
                     applied, {} redeliveries absorbed by the key",
                    effects.applied, effects.absorbed
                )
            } else {
                "the effect ledger could not be read from Redis".into()
            },
        });
    }

    watchers.cancel();
    let mut windows: Vec<(usize, FaultWindow)> =
        windows.lock().map(|w| w.clone()).unwrap_or_default();
    windows.sort_by_key(|(i, _)| *i);
    let mut windows: Vec<FaultWindow> = windows.into_iter().map(|(_, w)| w).collect();

    let past_deadline: u64 = reports
        .iter()
        .map(|r| r.watch.past_deadline.load(Ordering::Relaxed))
        .sum();
    invariants.push(InvariantResult {
        name: "answers_past_deadline".into(),
        value: past_deadline as f64,
        limit: 0.0,
        compare: Compare::AtMost,
        ok: past_deadline == 0,
        unit: "count".into(),
        detail: format!(
            "answers (or give-ups) later than the deadline of {:?} plus {:?}, measured from \
             when each request was due",
            plan.deadline, limits.deadline_grace
        ),
    });
    let unexplained: u64 = reports.iter().map(|r| r.report.unexplained).sum();
    let failures: BTreeMap<String, u64> = reports
        .iter()
        .flat_map(|r| r.report.failures.iter())
        .fold(BTreeMap::new(), |mut acc, (k, v)| {
            *acc.entry(k.clone()).or_default() += v;
            acc
        });
    invariants.push(InvariantResult {
        name: "unexplained_answers".into(),
        value: unexplained as f64,
        limit: 0.0,
        compare: Compare::AtMost,
        ok: unexplained == 0,
        unit: "count".into(),
        detail: format!(
            "answers that were neither a success nor an explicit error (a status >= 400 \
             without a problem+json body, a reset, a hang); failures by kind: {failures:?}"
        ),
    });
    if let Some(reads) = reports.iter().find(|r| r.name == "cache reads") {
        let samples = reads
            .watch
            .samples
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.clone()))
            .unwrap_or_default();
        let (during, ok) = samples
            .iter()
            .filter(|(sent_ms, _)| {
                let at = f64::from(*sent_ms) / 1000.0;
                windows
                    .iter()
                    .any(|w| at >= w.start_s && at < w.end_s.unwrap_or(f64::MAX))
            })
            .fold((0u64, 0u64), |(n, ok), (_, good)| {
                (n + 1, ok + u64::from(*good))
            });
        let percent = if during == 0 {
            100.0
        } else {
            100.0 * ok as f64 / during as f64
        };
        invariants.push(InvariantResult {
            name: "read_availability_during_faults".into(),
            value: percent,
            limit: limits.read_availability_percent,
            compare: Compare::AtLeast,
            ok: percent >= limits.read_availability_percent,
            unit: "percent".into(),
            detail: format!(
                "{ok} of {during} cache reads sent while a fault was active answered 200"
            ),
        });
    }

    let series: Vec<LoadSeries> = reports
        .iter()
        .map(|r| series_of(r.name, &r.target, &r.report, &clock))
        .collect();
    let rates: Vec<f64> = reports.iter().map(|r| r.rate).collect();
    let last_whole_second = load_end_s.floor() as u64;
    for window in &mut windows {
        window.recovery_s = recovery(window, &series, &rates, last_whole_second);
    }
    if !windows.is_empty() {
        let worst = windows
            .iter()
            .map(|w| {
                w.recovery_s
                    .unwrap_or_else(|| (load_end_s - w.end_s.unwrap_or(load_end_s)).max(0.0) + 1.0)
            })
            .fold(0.0f64, f64::max);
        let all_recovered = windows.iter().all(|w| w.recovery_s.is_some());
        let limit = limits.recovery.as_secs_f64();
        invariants.push(InvariantResult {
            name: "max_recovery_seconds".into(),
            value: worst,
            limit,
            compare: Compare::AtMost,
            ok: all_recovered && worst <= limit,
            unit: "seconds".into(),
            detail: format!(
                "time from a fault's end until every load answered at least {:.0}% of its \
                 rate with no errors for two seconds in a row{}",
                RECOVERED_SHARE * 100.0,
                if all_recovered {
                    ""
                } else {
                    "; a fault was not recovered from before the load ended"
                }
            ),
        });
    }

    stop_stack(stack).await;
    let passed = invariants.iter().all(|i| i.ok);
    let report = RunReport {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        passed,
        short: opts.short,
        started_at_unix_ms: clock.start_unix_ms,
        duration_s: load_end_s,
        invariants,
        faults: windows,
        events: events.take(),
        loads: series,
    };
    write_report(dir, report)
}

async fn stop_stack(stack: Arc<AsyncMutex<Stack>>) {
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.into_inner().stop().await,
        Err(shared) => {
            // A fault task still holds it: stop what can be stopped.
            let mut stack = shared.lock().await;
            for w in &mut stack.workers {
                w.kill9().await;
            }
        }
    }
}

fn write_report(dir: &Path, report: RunReport) -> Result<RunOutcome, RunError> {
    let failed = |source| RunError::Report {
        dir: dir.to_owned(),
        source,
    };
    let json_path = dir.join("report.json");
    let html_path = dir.join("report.html");
    let json = serde_json::to_string_pretty(&report).map_err(|e| failed(e.into()))?;
    std::fs::write(&json_path, json).map_err(failed)?;
    std::fs::write(&html_path, crate::html::render_html(&report)).map_err(failed)?;
    std::fs::write(dir.join("chart.svg"), crate::html::render_svg(&report)).map_err(failed)?;
    Ok(RunOutcome {
        report,
        json_path,
        html_path,
    })
}

fn series_of(name: &str, target: &str, report: &LoadReport, clock: &Clock) -> LoadSeries {
    // The load's own seconds start when its first request was due, a few
    // milliseconds after the run's clock; shift them onto the run's.
    let offset = report
        .started_at_unix_ms
        .saturating_sub(clock.start_unix_ms)
        / 1000;
    LoadSeries {
        name: name.to_owned(),
        target: target.to_owned(),
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

/// Seconds from the window's end until every load had two good seconds in
/// a row (no errors, at least [`RECOVERED_SHARE`] of its rate answered).
fn recovery(
    window: &FaultWindow,
    series: &[LoadSeries],
    rates: &[f64],
    last_whole_second: u64,
) -> Option<f64> {
    let end = window.end_s?;
    let good = |second: u64| {
        series.iter().zip(rates).all(|(s, rate)| {
            s.timeline
                .iter()
                .find(|p| p.second == second)
                .is_some_and(|p| p.errors == 0 && p.ok as f64 >= rate * RECOVERED_SHARE)
        })
    };
    let first = end.floor() as u64;
    (first..last_whole_second.saturating_sub(1))
        .find(|&s| good(s) && good(s + 1))
        .map(|s| (s as f64 - end).max(0.0))
}

#[allow(clippy::too_many_arguments)]
async fn play_fault(
    index: usize,
    step: FaultStep,
    short: bool,
    clock: Clock,
    stack: Arc<AsyncMutex<Stack>>,
    events: Events,
    windows: Arc<Mutex<Vec<(usize, FaultWindow)>>>,
    cancel: CancellationToken,
) {
    let (at, lasts) = step.window(short);
    let label = step.label();
    tokio::select! {
        _ = tokio::time::sleep_until((clock.start + at).into()) => {}
        _ = cancel.cancelled() => return,
    }
    let start_s = clock.seconds();
    let undo = apply(&step.action, &stack, &events, &label).await;
    let end_at = clock.start + at + lasts;
    if let FaultAction::WorkerKill {
        every,
        restart_after,
    } = &step.action
    {
        kill_workers(&stack, &events, end_at, *every, *restart_after, &cancel).await;
    } else {
        tokio::select! {
            _ = tokio::time::sleep_until(end_at.into()) => {}
            _ = cancel.cancelled() => {}
        }
    }
    revert(undo, &stack, &events, &label).await;
    let end_s = clock.seconds();
    if let Ok(mut w) = windows.lock() {
        w.push((
            index,
            FaultWindow {
                name: label,
                kind: step.action.kind().into(),
                start_s,
                end_s: Some(end_s),
                recovery_s: None,
            },
        ));
    }
}

/// How to end a fault.
enum Undo {
    RestartRedis,
    RestorePassword(String),
    RemoveProxyFault(ProxyTarget, crate::proxy::FaultId),
    Nothing,
}

async fn apply(
    action: &FaultAction,
    stack: &Arc<AsyncMutex<Stack>>,
    events: &Events,
    label: &str,
) -> Undo {
    let mut stack = stack.lock().await;
    match action {
        FaultAction::RedisKill => {
            stack.redis.kill9().await;
            events.push(
                "runner",
                format!("fault start: {label} (redis-server killed with SIGKILL)"),
            );
            Undo::RestartRedis
        }
        FaultAction::RedisStop => {
            stack.redis.stop().await;
            events.push(
                "runner",
                format!("fault start: {label} (redis-server shut down)"),
            );
            Undo::RestartRedis
        }
        FaultAction::RedisPassword => {
            let original = stack.password.clone().unwrap_or_default();
            let changed = format!("{original}-changed");
            if let Err(e) = stack.redis.config_set("requirepass", &changed).await {
                events.push("runner", format!("could not change the password: {e}"));
                return Undo::Nothing;
            }
            let killed = kill_clients(&stack.redis.url()).await;
            events.push(
                "runner",
                format!("fault start: {label} ({killed} client connections closed)"),
            );
            Undo::RestorePassword(original)
        }
        FaultAction::Proxy { target, fault } => {
            let proxy = match target {
                ProxyTarget::Redis => stack.redis_proxy.as_ref(),
                ProxyTarget::Database => stack.database_proxy.as_ref(),
            };
            match proxy {
                Some(proxy) => {
                    let id = proxy.add(fault.clone());
                    events.push("runner", format!("fault start: {label}"));
                    Undo::RemoveProxyFault(*target, id)
                }
                None => {
                    events.push("runner", format!("no proxy for {label}"));
                    Undo::Nothing
                }
            }
        }
        FaultAction::WorkerKill { .. } => {
            events.push("runner", format!("fault start: {label}"));
            Undo::Nothing
        }
    }
}

async fn revert(undo: Undo, stack: &Arc<AsyncMutex<Stack>>, events: &Events, label: &str) {
    let mut stack = stack.lock().await;
    match undo {
        Undo::RestartRedis => match stack.redis.restart().await {
            Ok(()) => events.push(
                "runner",
                format!("fault end: {label} (redis-server started again)"),
            ),
            Err(e) => events.push("runner", format!("redis-server did not start again: {e}")),
        },
        Undo::RestorePassword(original) => {
            match stack.redis.config_set("requirepass", &original).await {
                Ok(()) => events.push("runner", format!("fault end: {label} (password restored)")),
                Err(e) => events.push("runner", format!("could not restore the password: {e}")),
            }
        }
        Undo::RemoveProxyFault(target, id) => {
            let proxy = match target {
                ProxyTarget::Redis => stack.redis_proxy.as_ref(),
                ProxyTarget::Database => stack.database_proxy.as_ref(),
            };
            if let Some(proxy) = proxy {
                proxy.remove(id);
            }
            events.push("runner", format!("fault end: {label}"));
        }
        Undo::Nothing => events.push("runner", format!("fault end: {label}")),
    }
}

async fn kill_workers(
    stack: &Arc<AsyncMutex<Stack>>,
    events: &Events,
    until: Instant,
    every: Duration,
    restart_after: Duration,
    cancel: &CancellationToken,
) {
    let mut restarts = Vec::new();
    loop {
        {
            let mut guard = stack.lock().await;
            let running: Vec<usize> = (0..guard.workers.len())
                .filter(|&i| guard.workers[i].is_running())
                .collect();
            if !running.is_empty() {
                let victim = running[fastrand::usize(..running.len())];
                guard.workers[victim].kill9().await;
                let name = guard.workers[victim].name.clone();
                events.push(&name, "killed with SIGKILL");
                let stack = stack.clone();
                let events = events.clone();
                restarts.push(tokio::spawn(async move {
                    tokio::time::sleep(restart_after).await;
                    let mut guard = stack.lock().await;
                    match guard.restart_worker(victim).await {
                        Ok(()) => events.push(&name, "restarted"),
                        Err(e) => events.push(&name, format!("restart failed: {e}")),
                    }
                }));
            }
        }
        let next = Instant::now() + every;
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

/// Closes every normal client connection of the server (not this one), so
/// that the roles reconnect and meet the new password.
async fn kill_clients(url: &str) -> i64 {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut conn)
        .await
        .unwrap_or(0)
}

/// Watches one role's `/health`: its Redis state, reconnect attempts and
/// whether it answers at all; changes become events.
async fn watch_health(role: String, url: String, events: Events, stop: CancellationToken) {
    let client = reqwest::Client::new();
    let mut last: Option<String> = None;
    let mut last_attempts_print = Instant::now();
    loop {
        let state = match client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(resp) => match resp.json::<Value>().await {
                Ok(body) => {
                    let redis = &body["redis"];
                    let state = redis["state"].as_str().unwrap_or("unknown").to_owned();
                    let attempts = redis["reconnect_attempts"].as_u64().unwrap_or(0);
                    let error = redis["last_error"].as_str().unwrap_or("").to_owned();
                    if state == "ready" {
                        last_attempts_print = Instant::now();
                    } else if last_attempts_print.elapsed() >= STATUS_EVERY {
                        last_attempts_print = Instant::now();
                        if events.live {
                            eprintln!(
                                "[{:>6.1}s] {role:<10} redis {state}, {attempts} reconnect attempts so far{}",
                                events.clock.seconds(),
                                if error.is_empty() {
                                    String::new()
                                } else {
                                    format!(", last error {error}")
                                }
                            );
                        }
                    }
                    if error.is_empty() || state == "ready" {
                        format!("redis {state}")
                    } else {
                        format!("redis {state} ({error})")
                    }
                }
                Err(_) => "health unreadable".to_owned(),
            },
            Err(_) => "process not answering".to_owned(),
        };
        if last.as_deref() != Some(state.as_str()) {
            let what = match &last {
                Some(before) => format!("{before} -> {state}"),
                None => state.clone(),
            };
            events.push(&role, what);
            last = Some(state);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Prints one line of figures per load every few seconds.
async fn print_status(
    watches: Vec<(&'static str, Arc<Watch>)>,
    clock: Clock,
    stop: CancellationToken,
) {
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
}

/// What became of the accepted jobs.
#[derive(Debug, Default)]
struct JobTally {
    accepted: u64,
    done: u64,
    failed: u64,
    expired: u64,
    dead: u64,
    missing: u64,
    pending: u64,
}

impl JobTally {
    /// Accepted and then neither finished nor failed explicitly.
    fn lost(&self) -> u64 {
        self.missing + self.pending
    }
}

/// Reads every job's status until each is final or `settle` has passed.
async fn settle_jobs(ingress: &str, ids: Vec<String>, settle: Duration) -> JobTally {
    let client = reqwest::Client::new();
    let give_up = Instant::now() + settle;
    let mut tally = JobTally {
        accepted: ids.len() as u64,
        ..JobTally::default()
    };
    let mut open = ids;
    loop {
        let statuses = job_statuses(&client, ingress, &open).await;
        let mut still = Vec::new();
        let mut missing = 0;
        for (id, status) in open.into_iter().zip(statuses) {
            match status.as_deref() {
                Some("done") => tally.done += 1,
                Some("failed") => tally.failed += 1,
                Some("expired") => tally.expired += 1,
                Some("dead") => tally.dead += 1,
                // A record that is gone may only be gone for the moment
                // (Redis loading its file): ask again until the end.
                Some("missing") => {
                    missing += 1;
                    still.push(id);
                }
                _ => still.push(id),
            }
        }
        if still.is_empty() || Instant::now() >= give_up {
            tally.missing = missing;
            tally.pending = still.len() as u64 - missing;
            return tally;
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The status of each job (`missing` for a 404, `None` when unreadable).
async fn job_statuses(
    client: &reqwest::Client,
    ingress: &str,
    ids: &[String],
) -> Vec<Option<String>> {
    const PARALLEL: usize = 8;
    let mut out = vec![None; ids.len()];
    for (chunk_index, chunk) in ids.chunks(PARALLEL).enumerate() {
        let mut tasks = Vec::new();
        for id in chunk {
            let client = client.clone();
            let url = format!("{ingress}/jobs/weather/{id}");
            tasks.push(tokio::spawn(async move {
                let resp = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                if resp.status() == reqwest::StatusCode::NOT_FOUND {
                    return Some("missing".to_owned());
                }
                if !resp.status().is_success() {
                    return None;
                }
                let body: Value = resp.json().await.ok()?;
                body["status"].as_str().map(str::to_owned)
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            out[chunk_index * PARALLEL + i] = task.await.ok().flatten();
        }
    }
    out
}

/// What the effect ledger of the weather worker holds.
#[derive(Debug, Default)]
struct Effects {
    read: bool,
    applied: u64,
    duplicated: u64,
    absorbed: u64,
}

async fn read_effects(redis_url: &str) -> Effects {
    let read = async {
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // The stack runs the roles with the default prefix and topic.
        let keys = Keys::default();
        let topic = Topic::parse("weather").expect("a valid topic name");
        let counts: Vec<u64> = redis::cmd("HVALS")
            .arg(keys.effects_applied(&topic))
            .query_async(&mut conn)
            .await?;
        let absorbed: Option<u64> = redis::cmd("HGET")
            .arg(keys.effects_stats(&topic))
            .arg("absorbed")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>(Effects {
            read: true,
            applied: counts.len() as u64,
            duplicated: counts.iter().filter(|&&c| c > 1).count() as u64,
            absorbed: absorbed.unwrap_or(0),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(second: u64, ok: u64, errors: u64) -> SecondPoint {
        SecondPoint {
            second,
            requests: ok + errors,
            ok,
            errors,
            p99_ms: 1.0,
        }
    }

    fn series(points: Vec<SecondPoint>) -> LoadSeries {
        LoadSeries {
            name: "x".into(),
            target: "GET /".into(),
            requests: 0,
            ok: 0,
            errors: 0,
            rps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            timeline: points,
        }
    }

    fn window(end: f64) -> FaultWindow {
        FaultWindow {
            name: "f".into(),
            kind: "redis_kill".into(),
            start_s: 2.0,
            end_s: Some(end),
            recovery_s: None,
        }
    }

    #[test]
    fn recovery_is_the_first_of_two_good_seconds_after_the_fault() {
        let s = series(
            (0..12)
                .map(|t| match t {
                    5 => point(t, 2, 8),
                    6 => point(t, 9, 1),
                    7 => point(t, 10, 0),
                    8 => point(t, 3, 0), // below 80% of the rate
                    _ => point(t, 10, 0),
                })
                .collect(),
        );
        let r = recovery(&window(5.5), &[s], &[10.0], 12);
        assert_eq!(r, Some(3.5), "seconds 9 and 10 are the first good pair");
    }

    #[test]
    fn a_load_that_never_recovers_has_no_recovery_time() {
        let s = series((0..10).map(|t| point(t, 0, 10)).collect());
        assert_eq!(recovery(&window(3.0), &[s], &[10.0], 10), None);
    }

    #[test]
    fn no_errors_at_all_is_an_immediate_recovery() {
        let s = series((0..10).map(|t| point(t, 10, 0)).collect());
        assert_eq!(recovery(&window(3.2), &[s], &[10.0], 10), Some(0.0));
    }

    #[test]
    fn lost_jobs_are_the_missing_and_the_unfinished() {
        let t = JobTally {
            accepted: 10,
            done: 6,
            failed: 1,
            expired: 0,
            dead: 1,
            missing: 1,
            pending: 1,
        };
        assert_eq!(t.lost(), 2);
    }
}
