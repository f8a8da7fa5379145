//! The result of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a run sent and what came back.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LoadReport {
    /// Requests completed (answered or failed).
    pub requests: u64,
    /// Answers with a status below 400.
    pub ok: u64,
    /// `requests - ok`: answers of 400 and above, and failures.
    pub errors: u64,
    /// Answers by status code (`"200"` -> count).
    pub status_counts: BTreeMap<String, u64>,
    /// Failures by kind (`"connect"`, `"timeout"`, `"io"`); kinds that did
    /// not happen are absent.
    pub failures: BTreeMap<String, u64>,
    /// Answers of 400 and above whose `Content-Type` is not
    /// `application/problem+json`, plus every failure: errors the service
    /// did not explain.
    pub unexplained: u64,
    /// Completed requests per second over the run.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency, milliseconds.
    #[serde(default)]
    pub p999_ms: f64,
    /// Highest latency, milliseconds.
    pub max_ms: f64,
    /// From the start until the last request completed, seconds.
    pub duration_s: f64,
    /// Wall-clock time of the start, Unix milliseconds.
    pub started_at_unix_ms: u64,
    /// One record per elapsed second since the start, in order, no gaps;
    /// requests are counted in the second they completed.
    pub timeline: Vec<Second>,
}

/// One second of a run (by completion time since the start).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Second {
    /// Seconds since the start (0 is the first).
    pub second: u64,
    /// Requests completed in this second.
    pub requests: u64,
    /// Of which answered below 400.
    pub ok: u64,
    /// Of which answered 400 and above or failed.
    pub errors: u64,
    /// Median latency, milliseconds (1 % precision).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds (1 % precision).
    pub p99_ms: f64,
    /// Highest latency, milliseconds (1 % precision).
    pub max_ms: f64,
}

impl LoadReport {
    /// The stable fields `holdfast load --json` prints: no timeline.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "status_counts": self.status_counts,
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "failures": self.failures,
            "unexplained": self.unexplained,
            "duration_s": self.duration_s,
        })
    }
}
