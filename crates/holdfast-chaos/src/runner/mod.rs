//! Runs a scenario: starts the stack, runs the loads, plays the faults,
//! watches every role's health, then checks the invariants and writes the
//! report.
//!
//! The loads are open-model (fixed rates, latency measured from when each
//! request was due), so a stall shows as latency and errors rather than as
//! fewer requests. Three run at once: calls (`POST /WeatherForecast/city`,
//! with a deadline), jobs (`POST /jobs/weather`, each with its own
//! idempotency key) and cache reads (`GET /api/products/1`); see the `loads` module.
//! The faults are played by [`crate::faults`], and what the run is held to
//! is measured by [`crate::invariants`].

mod capacity;
mod events;
mod loads;

pub use capacity::Capacity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use self::events::{Clock, Events, unix_ms, watch_health};
use self::loads::Finished;
use crate::faults::SharedStack;
use crate::invariants;
use crate::report::{FaultWindow, InvariantResult, LoadSeries, RunReport};
use crate::scenario::{FaultStep, Scenario};
use crate::stack::{Launcher, Stack, StackError};

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The CI form: shorter load and faults.
    pub short: bool,
    /// Where each run gets a directory of its own.
    pub report_dir: PathBuf,
    /// The `holdfast` binary that runs the roles, and their command lines.
    pub launcher: Launcher,
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
    /// The capacity probe found the stack answering no call at all.
    #[error("the capacity probe found the stack answering no call (see the roles' logs)")]
    NoCapacity,
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
    let mut stack = Stack::start(&opts.launcher, &scenario.stack, &dir).await?;
    let result = match follow_capacity(scenario, opts, &stack).await {
        Ok((scenario, capacity)) => run_on(&scenario, capacity, opts, &dir, stack, shutdown).await,
        Err(err) => {
            stack.stop().await;
            Err(err)
        }
    };
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

/// The scenario with its calls at their share of the stack's capacity,
/// measured by a probe, when it asks for that; as written otherwise.
async fn follow_capacity(
    scenario: &Scenario,
    opts: &RunOptions,
    stack: &Stack,
) -> Result<(Scenario, Option<Followed>), RunError> {
    if scenario.load.capacity_share.is_none() {
        return Ok((scenario.clone(), None));
    }
    let capacity = capacity::probe(scenario, opts.short, stack).await?;
    if capacity.calls_per_sec < 1.0 {
        return Err(RunError::NoCapacity);
    }
    let rates = capacity::rates(scenario, capacity.calls_per_sec);
    // What the probe queued has drained before the run's clock starts.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut followed = scenario.clone();
    followed.load.calls_per_sec = rates.calls;
    if opts.live {
        eprintln!(
            "chaos: capacity probe: {:.0} calls/s answered with {} in flight; calls at {:.0}/s{}",
            capacity.calls_per_sec,
            capacity.concurrency,
            rates.calls,
            if rates.surge > 0.0 {
                format!(", {:.0}/s more during the surge", rates.surge)
            } else {
                String::new()
            }
        );
    }
    Ok((
        followed,
        Some(Followed {
            capacity,
            surge_rate: rates.surge,
        }),
    ))
}

/// What a run that follows the capacity found before it started.
#[derive(Debug, Clone, Copy)]
struct Followed {
    capacity: Capacity,
    surge_rate: f64,
}

async fn run_on(
    scenario: &Scenario,
    followed: Option<Followed>,
    opts: &RunOptions,
    dir: &Path,
    stack: Stack,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let clock = Clock::now();
    let events = Events::new(clock, opts.live);
    events.push(
        "runner",
        format!(
            "stack ready: ingress {}, api {}, redis {}",
            stack.ingress_url,
            stack.api_url,
            holdfast_redis::redact(&stack.redis_url())
        ),
    );
    if let Some(followed) = &followed {
        events.push(
            "runner",
            format!(
                "capacity probe: {:.0} calls/s; calls at {:.0}/s, jobs at {:.0}/s{}",
                followed.capacity.calls_per_sec,
                scenario.load.calls_per_sec,
                scenario.load.jobs_per_sec,
                if followed.surge_rate > 0.0 {
                    format!(", {:.0}/s more calls during the surge", followed.surge_rate)
                } else {
                    String::new()
                }
            ),
        );
    }
    // The health watchers go on while the jobs settle, until the
    // invariants are measured; the guard ends them on an early return too.
    let watchers = CancellationToken::new();
    let _end_watchers = watchers.clone().drop_guard();
    for role in stack.roles() {
        tokio::spawn(watch_health(
            role.name.clone(),
            format!("http://{}/health", role.admin),
            events.clone(),
            watchers.clone(),
        ));
    }

    // Cancelled when the loads end (or fail, or the run is interrupted):
    // it also ends the faults still playing and the live status line.
    let stop_loads = shutdown.child_token();
    let surge_rate = followed.map_or(0.0, |f| f.surge_rate);
    let loads = loads::start(scenario, opts.short, &stack, clock, &stop_loads, surge_rate);
    let status = opts
        .live
        .then(|| loads::print_status(&loads, clock, stop_loads.clone()));
    let stack: SharedStack = Arc::new(AsyncMutex::new(stack));
    let faults: Vec<_> = scenario
        .faults
        .iter()
        .map(|step| {
            tokio::spawn(play_fault(
                step.clone(),
                opts.short,
                clock,
                stack.clone(),
                events.clone(),
                stop_loads.clone(),
            ))
        })
        .collect();
    let finished = loads::finish(loads, &stop_loads).await?;
    stop_loads.cancel();
    let mut windows = Vec::new();
    for fault in faults {
        if let Ok(Some(window)) = fault.await {
            windows.push(window);
        }
    }
    if let Some(status) = status {
        let _ = status.await;
    }
    if shutdown.is_cancelled() {
        watchers.cancel();
        stop_stack(stack).await;
        return Err(RunError::Interrupted);
    }
    let load_end_s = clock.seconds();

    restart_killed_workers(&stack, &events).await;
    let mut checked = check_jobs(scenario, opts.live, &stack, &finished).await;
    watchers.cancel();
    checked.extend(check_answers(scenario, &finished, &windows));
    let series: Vec<_> = finished
        .iter()
        .map(|load| loads::series_of(load, &clock))
        .collect();
    // A surge is a window on the timeline like a fault, measured for
    // recovery against the loads that go on after it.
    let surge = scenario
        .load
        .surge
        .as_ref()
        .filter(|_| surge_rate > 0.0)
        .map(|surge| {
            let (at, lasts) = surge.window(opts.short);
            FaultWindow {
                name: format!("overload: {}x capacity", surge.times_capacity),
                kind: "surge".into(),
                start_s: at.as_secs_f64(),
                end_s: Some((at + lasts).as_secs_f64()),
                recovery_s: None,
            }
        });
    windows.extend(surge.clone());
    let (steady, rates): (Vec<LoadSeries>, Vec<f64>) = finished
        .iter()
        .zip(&series)
        .filter(|(load, _)| load.name != loads::SURGE)
        .map(|(load, series)| (series.clone(), load.rate))
        .unzip();
    invariants::measure_recoveries(&mut windows, &steady, &rates, load_end_s);
    if let (Some(followed), Some(window)) = (followed, windows.iter().find(|w| w.kind == "surge")) {
        checked.push(invariants::overload_goodput(
            &series,
            &[loads::CALLS, loads::SURGE],
            (window.start_s, window.end_s.unwrap_or(load_end_s)),
            followed.capacity.calls_per_sec,
            scenario.limits.overload_goodput_percent,
        ));
        checked.push(invariants::overload_recovery(
            window,
            load_end_s,
            scenario.limits.overload_recovery,
        ));
    }
    checked.extend(invariants::max_recovery_seconds(
        &windows,
        load_end_s,
        scenario.limits.recovery,
    ));

    stop_stack(stack).await;
    let report = RunReport {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        passed: checked.iter().all(|i| i.ok),
        short: opts.short,
        started_at_unix_ms: clock.start_unix_ms,
        duration_s: load_end_s,
        invariants: checked,
        faults: windows,
        events: events.take(),
        loads: series,
        capacity: followed.map(|f| f.capacity),
    };
    write_report(dir, report)
}

/// Plays one step of the timeline on the run's clock, unless `cancel`
/// comes first; its window on the timeline if it was played.
async fn play_fault(
    step: FaultStep,
    short: bool,
    clock: Clock,
    stack: SharedStack,
    events: Events,
    cancel: CancellationToken,
) -> Option<FaultWindow> {
    let (at, lasts) = step.window(short);
    let label = step.label();
    tokio::select! {
        _ = tokio::time::sleep_until((clock.start + at).into()) => {}
        _ = cancel.cancelled() => return None,
    }
    let start_s = clock.seconds();
    step.action
        .play(&label, &stack, &events, clock.start + at + lasts, &cancel)
        .await;
    Some(FaultWindow {
        name: label,
        kind: step.action.kind(),
        start_s,
        end_s: Some(clock.seconds()),
        recovery_s: None,
    })
}

/// Every worker runs again before the jobs are counted.
async fn restart_killed_workers(stack: &SharedStack, events: &Events) {
    let mut stack = stack.lock().await;
    for i in 0..stack.workers.len() {
        if !stack.workers[i].is_running() {
            let _ = stack.restart_worker(i).await;
            events.push(&stack.workers[i].name.clone(), "restarted after the load");
        }
    }
}

/// The invariants on jobs, when the jobs load ran: none lost, none applied
/// twice.
async fn check_jobs(
    scenario: &Scenario,
    live: bool,
    stack: &SharedStack,
    finished: &[Finished],
) -> Vec<InvariantResult> {
    let Some(ids) = finished
        .iter()
        .find(|load| load.name == loads::JOBS)
        .and_then(|load| load.watch.job_ids())
    else {
        return Vec::new();
    };
    let (ingress_url, redis_url) = {
        let stack = stack.lock().await;
        (stack.ingress_url.clone(), stack.redis_url())
    };
    // On a replicated topology the promise is the level each job's answer
    // reported; on one server it is the server's appendfsync.
    let promised = (scenario.stack.topology != crate::scenario::Topology::Single
        && scenario.stack.request_durability != holdfast_core::Durability::None)
        .then(|| scenario.stack.request_durability.to_string());
    if live {
        eprintln!(
            "chaos: load done; waiting for {} accepted jobs to finish",
            ids.len()
        );
    }
    vec![
        invariants::accepted_jobs_lost(
            &ingress_url,
            ids,
            scenario.load.settle,
            scenario.stack.promises_no_loss(),
            &scenario.stack.durability_text(),
            promised.as_deref(),
        )
        .await,
        invariants::duplicate_effects(&redis_url).await,
    ]
}

/// The invariants on what the loads were answered: in time, explained,
/// and (for cache reads) available while the faults played.
fn check_answers(
    scenario: &Scenario,
    finished: &[Finished],
    windows: &[FaultWindow],
) -> Vec<InvariantResult> {
    let late = finished.iter().map(|load| load.watch.past_deadline()).sum();
    let mut checked = vec![
        invariants::answers_past_deadline(
            late,
            scenario.load.deadline,
            scenario.limits.deadline_grace,
        ),
        invariants::unexplained_answers(finished.iter().map(|load| &load.report)),
    ];
    if let Some(reads) = finished.iter().find(|load| load.name == loads::CACHE_READS) {
        checked.push(invariants::read_availability_during_faults(
            &reads.watch.samples(),
            windows,
            scenario.limits.read_availability_percent,
        ));
    }
    checked
}

/// Stops the stack in order; a fault still playing waits for the lock
/// between its steps, and then finds nothing to act on.
async fn stop_stack(stack: SharedStack) {
    stack.lock().await.stop().await;
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
    std::fs::write(&html_path, crate::report_page::render_html(&report)).map_err(failed)?;
    std::fs::write(
        dir.join("chart.svg"),
        crate::report_page::render_svg(&report),
    )
    .map_err(failed)?;
    Ok(RunOutcome {
        report,
        json_path,
        html_path,
    })
}
