//! What a scenario run found: the JSON document written next to the HTML
//! page, and what `holdfast chaos run --json` prints a summary of.
//!
//! Times are seconds since the run started (the first load request), so the
//! timeline of the loads, the fault windows and the events line up.

use serde::{Deserialize, Serialize};

/// The whole report of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// One sentence on what the scenario does.
    pub description: String,
    /// Whether every invariant held.
    pub passed: bool,
    /// Whether this was the short (CI) form.
    pub short: bool,
    /// Wall clock at the start, unix milliseconds.
    pub started_at_unix_ms: u64,
    /// Length of the run, seconds.
    pub duration_s: f64,
    /// Invariants checked, in a stable order.
    pub invariants: Vec<InvariantResult>,
    /// Faults played, with when they started, ended and how long recovery took.
    pub faults: Vec<FaultWindow>,
    /// State changes and actions seen during the run (Redis state of each
    /// role, processes killed and restarted, ...).
    pub events: Vec<Event>,
    /// The loads that ran, each with its per-second timeline.
    pub loads: Vec<LoadSeries>,
    /// What the capacity probe measured, when the scenario's rates follow
    /// the stack's capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::runner::Capacity>,
}

/// One invariant: a measured value against its limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvariantResult {
    /// Stable name, e.g. `accepted_jobs_lost`.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The limit it is held to.
    pub limit: f64,
    /// How value and limit compare when the invariant holds: `<=` or `>=`.
    pub compare: Compare,
    /// Whether it held.
    pub ok: bool,
    /// Unit of value and limit (`count`, `percent`, `seconds`).
    pub unit: String,
    /// A sentence for people: what was counted, how.
    pub detail: String,
}

/// How an invariant's value must compare with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The value must be at most the limit.
    #[serde(rename = "<=")]
    AtMost,
    /// The value must be at least the limit.
    #[serde(rename = ">=")]
    AtLeast,
}

impl Compare {
    /// Whether `value` satisfies `limit`.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Compare::AtMost => value <= limit,
            Compare::AtLeast => value >= limit,
        }
    }
}

/// A fault's window on the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Label for people, e.g. `redis SIGKILL`.
    pub name: String,
    /// The fault's kind as written in the scenario (`redis_kill`, `proxy`, ...).
    pub kind: String,
    /// When it started.
    pub start_s: f64,
    /// When it ended (None: it lasted to the end of the run).
    pub end_s: Option<f64>,
    /// Seconds from its end until the loads were healthy again (None: not
    /// recovered before the run ended, or nothing to recover from).
    pub recovery_s: Option<f64>,
}

/// A marked moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at_s: f64,
    /// Who: `api`, `worker-1`, `redis`, `runner`, ...
    pub source: String,
    /// What happened, e.g. `redis ready -> reconnecting`.
    pub what: String,
}

/// One load's figures and timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSeries {
    /// Name: `calls`, `jobs`, `cache reads`.
    pub name: String,
    /// Target, `METHOD URL`.
    pub target: String,
    /// Requests sent.
    pub requests: u64,
    /// Answers below 400.
    pub ok: u64,
    /// Everything else.
    pub errors: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// One point per second of the run.
    pub timeline: Vec<SecondPoint>,
}

/// One second of one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Second since the run started (the point covers [second, second + 1)).
    pub second: u64,
    /// Requests that completed in that second.
    pub requests: u64,
    /// Of which answered below 400.
    pub ok: u64,
    /// Of which errors of any kind.
    pub errors: u64,
    /// 99th percentile latency of that second's requests, milliseconds.
    pub p99_ms: f64,
}
