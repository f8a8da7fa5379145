//! The six invariants a scenario run is held to, one function each: what
//! is measured, how, and when it holds. The runner gathers what they read
//! (the loads' hooks, the jobs' final states, the effect ledger in Redis,
//! the fault windows) and calls them in the report's order:
//!
//! | invariant | holds when |
//! |-----------|------------|
//! | [`accepted_jobs_lost`] | every job answered 202 reaches a final state before the settle time is up (held to 0 at `durability = "always"` only) |
//! | [`duplicate_effects`] | no idempotency key's effect was applied twice |
//! | [`answers_past_deadline`] | no answer came later than its deadline plus the grace |
//! | [`unexplained_answers`] | every answer is a success or an explicit error |
//! | [`read_availability_during_faults`] | enough cache reads sent during a fault were answered 200 |
//! | [`max_recovery_seconds`] | after every fault, the loads were healthy again in time |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use holdfast_core::{Keys, Topic};
use holdfast_load::LoadReport;
use holdfast_redis::{Redis, RedisConfig};
use serde_json::Value;

use crate::report::{Compare, FaultWindow, InvariantResult, LoadSeries};

/// A second counts as recovered when every load answered at least this
/// share of its rate without errors.
pub const RECOVERED_SHARE: f64 = 0.8;

/// How long reading the effect ledger may take.
const LEDGER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A result whose `ok` is whether `value` compares with `limit` as it must.
fn judged(
    name: &str,
    value: f64,
    compare: Compare,
    limit: f64,
    unit: &str,
    detail: String,
) -> InvariantResult {
    InvariantResult {
        name: name.into(),
        value,
        limit,
        compare,
        ok: compare.holds(value, limit),
        unit: unit.into(),
        detail,
    }
}

/// `accepted_jobs_lost`: reads the status of every job answered 202 (`jobs`:
/// each id with the durability its answer reported, through the ingress)
/// until each is final or `settle` has passed. A job is lost when its
/// record is gone or it never finished. Held to 0 when the stack promises
/// no loss (`strict`); otherwise reported only. With `promised` (a level
/// such as `replicas:1`), the promise covers only the jobs whose answer
/// reported that level; the others (their wait timed out) are counted
/// apart. `durability` says how durable the stack was, in words.
pub async fn accepted_jobs_lost(
    ingress: &str,
    jobs: Vec<(String, String)>,
    settle: Duration,
    strict: bool,
    durability: &str,
    promised: Option<&str>,
) -> InvariantResult {
    let (covered, below): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|(_, reached)| promised.is_none_or(|level| reached == level));
    let ids = |jobs: Vec<(String, String)>| jobs.into_iter().map(|(id, _)| id).collect();
    let (tally, below) = tokio::join!(
        settle_jobs(ingress, ids(covered), settle),
        settle_jobs(ingress, ids(below), settle)
    );
    let below_text = match promised {
        Some(level) if below.accepted > 0 => format!(
            "; {} more accepted below {level} (the wait timed out), {} of them lost",
            below.accepted,
            below.lost()
        ),
        Some(level) => format!("; every job reached {level}"),
        None => String::new(),
    };
    judged(
        "accepted_jobs_lost",
        tally.lost() as f64,
        Compare::AtMost,
        if strict { 0.0 } else { tally.accepted as f64 },
        "count",
        format!(
            "{} jobs accepted (202){}; {} done, {} failed, {} expired, {} dead-lettered, {} \
             unknown (record gone), {} never finished within {:?} after the load{}. \
             Durability: {}{}",
            tally.accepted,
            promised.map(|l| format!(" at {l}")).unwrap_or_default(),
            tally.done,
            tally.failed,
            tally.expired,
            tally.dead,
            tally.missing,
            tally.pending,
            settle,
            below_text,
            durability,
            if strict {
                ""
            } else {
                " (reported, not held to 0 at this level)"
            }
        ),
    )
}

/// `duplicate_effects`: reads the weather worker's effect ledger in Redis
/// (idempotency key → times applied). Holds when no key was applied more
/// than once, and fails when the ledger cannot be read.
pub async fn duplicate_effects(redis_url: &str) -> InvariantResult {
    let effects = read_effects(redis_url).await;
    let mut result = judged(
        "duplicate_effects",
        effects.duplicated as f64,
        Compare::AtMost,
        0.0,
        "count",
        if effects.read {
            format!(
                "idempotency keys whose effect was applied more than once; {} effects \
                 applied, {} redeliveries absorbed by the key",
                effects.applied, effects.absorbed
            )
        } else {
            "the effect ledger could not be read from Redis".into()
        },
    );
    result.ok &= effects.read;
    result
}

/// `answers_past_deadline`: `late` answers (or give-ups) came later than
/// `deadline` plus `grace`, measured by the loads' hooks from when each
/// request was due. Holds at 0.
pub fn answers_past_deadline(late: u64, deadline: Duration, grace: Duration) -> InvariantResult {
    judged(
        "answers_past_deadline",
        late as f64,
        Compare::AtMost,
        0.0,
        "count",
        format!(
            "answers (or give-ups) later than the deadline of {deadline:?} plus {grace:?}, \
             measured from when each request was due"
        ),
    )
}

/// `unexplained_answers`: what the loads counted as neither a success nor
/// an explicit error (a status of 400 or more without a problem+json body,
/// a reset, a hang). Holds at 0.
pub fn unexplained_answers<'a>(loads: impl IntoIterator<Item = &'a LoadReport>) -> InvariantResult {
    let mut unexplained = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for load in loads {
        unexplained += load.unexplained;
        for (kind, count) in &load.failures {
            *failures.entry(kind.clone()).or_default() += count;
        }
    }
    judged(
        "unexplained_answers",
        unexplained as f64,
        Compare::AtMost,
        0.0,
        "count",
        format!(
            "answers that were neither a success nor an explicit error (a status >= 400 \
             without a problem+json body, a reset, a hang); failures by kind: {failures:?}"
        ),
    )
}

/// `read_availability_during_faults`: of the cache reads sent while a
/// fault was active (`samples`: when each was sent, in ms on the run's
/// clock, and whether it was answered 200), the share answered 200, in
/// percent (100 when none was sent then). Holds at `limit_percent` or more.
pub fn read_availability_during_faults(
    samples: &[(u32, bool)],
    windows: &[FaultWindow],
    limit_percent: f64,
) -> InvariantResult {
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
    judged(
        "read_availability_during_faults",
        percent,
        Compare::AtLeast,
        limit_percent,
        "percent",
        format!("{ok} of {during} cache reads sent while a fault was active answered 200"),
    )
}

/// Sets each window's `recovery_s`: seconds from its end until every load
/// (`series`, asked for `rates` requests per second) had two good seconds
/// in a row, within the load (which ended at `load_end_s`).
pub fn measure_recoveries(
    windows: &mut [FaultWindow],
    series: &[LoadSeries],
    rates: &[f64],
    load_end_s: f64,
) {
    let last_whole_second = load_end_s.floor() as u64;
    for window in windows {
        window.recovery_s = recovery(window, series, rates, last_whole_second);
    }
}

/// `overload_goodput_percent`: while a surge offered more than the stack
/// can take, the answers 2xx per second of the loads named `counted`
/// (calls and surge calls), over the surge's whole seconds after its
/// first (when the ingress is still learning the queue's drain rate), as a
/// share of the `capacity` the probe measured. Holds at `limit_percent` or
/// more.
pub fn overload_goodput(
    series: &[LoadSeries],
    counted: &[&str],
    window: (f64, f64),
    capacity: f64,
    limit_percent: f64,
) -> InvariantResult {
    let first = window.0.ceil() as u64 + 1;
    let end = window.1.floor() as u64;
    let seconds = end.saturating_sub(first);
    let answered: u64 = series
        .iter()
        .filter(|s| counted.contains(&s.name.as_str()))
        .flat_map(|s| s.timeline.iter())
        .filter(|p| p.second >= first && p.second < end)
        .map(|p| p.ok)
        .sum();
    let per_second = answered as f64 / seconds.max(1) as f64;
    let percent = if capacity > 0.0 {
        per_second / capacity * 100.0
    } else {
        0.0
    };
    let mut result = judged(
        "overload_goodput_percent",
        (percent * 10.0).round() / 10.0,
        Compare::AtLeast,
        limit_percent,
        "percent",
        format!(
            "during the surge (seconds {first} to {end}), {per_second:.0} calls answered \
             2xx a second against the {capacity:.0} a second the stack answered in the \
             capacity probe (jobs running beside both)"
        ),
    );
    result.ok &= seconds > 0;
    result
}

/// `overload_recovery_seconds`: the time from the surge's end until every
/// load was healthy again (see [`measure_recoveries`]), held to `limit`.
pub fn overload_recovery(
    window: &FaultWindow,
    load_end_s: f64,
    limit: Duration,
) -> InvariantResult {
    let value = window
        .recovery_s
        .unwrap_or_else(|| (load_end_s - window.end_s.unwrap_or(load_end_s)).max(0.0) + 1.0);
    let mut result = judged(
        "overload_recovery_seconds",
        value,
        Compare::AtMost,
        limit.as_secs_f64(),
        "seconds",
        format!(
            "time from the surge's end until every load answered at least {:.0}% of its \
             rate with no errors for two seconds in a row{}",
            RECOVERED_SHARE * 100.0,
            if window.recovery_s.is_some() {
                ""
            } else {
                "; not recovered before the load ended"
            }
        ),
    );
    result.ok &= window.recovery_s.is_some();
    result
}

/// `max_recovery_seconds`: the longest recovery of the `windows` (as
/// [`measure_recoveries`] set them; a fault never recovered from counts as
/// lasting past the load's end at `load_end_s`). Holds when every fault was
/// recovered from within `limit`; `None` without faults.
pub fn max_recovery_seconds(
    windows: &[FaultWindow],
    load_end_s: f64,
    limit: Duration,
) -> Option<InvariantResult> {
    if windows.is_empty() {
        return None;
    }
    let worst = windows
        .iter()
        .map(|w| {
            w.recovery_s
                .unwrap_or_else(|| (load_end_s - w.end_s.unwrap_or(load_end_s)).max(0.0) + 1.0)
        })
        .fold(0.0f64, f64::max);
    let all_recovered = windows.iter().all(|w| w.recovery_s.is_some());
    let mut result = judged(
        "max_recovery_seconds",
        worst,
        Compare::AtMost,
        limit.as_secs_f64(),
        "seconds",
        format!(
            "time from a fault's end until every load answered at least {:.0}% of its \
             rate with no errors for two seconds in a row{}",
            RECOVERED_SHARE * 100.0,
            if all_recovered {
                ""
            } else {
                "; a fault was not recovered from before the load ended"
            }
        ),
    );
    result.ok &= all_recovered;
    Some(result)
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
    if ids.is_empty() {
        return JobTally::default();
    }
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
    // Reads in flight at once, so that thousands of jobs are read in
    // seconds without flooding the ingress.
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
    // A supervised handle: any URL form the roles take (one server,
    // Sentinel, Cluster).
    let stop = tokio_util::sync::CancellationToken::new();
    let Ok(redis) = Redis::start(RedisConfig::new(redis_url), stop.clone()) else {
        return Effects::default();
    };
    let read = async {
        if !redis.wait_ready(LEDGER_READ_TIMEOUT).await {
            return None;
        }
        // The stack runs the roles with the default prefix and topic.
        let keys = Keys::default();
        let topic = Topic::parse("weather").expect("a valid topic name");
        let counts: Vec<u64> = redis
            .cmd(redis::cmd("HVALS").arg(keys.effects_applied(&topic)))
            .await
            .ok()?;
        let absorbed: Option<u64> = redis
            .cmd(
                redis::cmd("HGET")
                    .arg(keys.effects_stats(&topic))
                    .arg("absorbed"),
            )
            .await
            .ok()?;
        Some(Effects {
            read: true,
            applied: counts.len() as u64,
            duplicated: counts.iter().filter(|&&c| c > 1).count() as u64,
            absorbed: absorbed.unwrap_or(0),
        })
    };
    let effects = tokio::time::timeout(LEDGER_READ_TIMEOUT * 2, read)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    stop.cancel();
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SecondPoint;

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
