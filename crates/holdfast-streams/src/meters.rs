//! Metric handles resolved once, so hot paths record without allocating
//! label strings or searching the registry on every request.

use std::time::Duration;

use holdfast_core::{Topic, metric_names};
use metrics::{Counter, Gauge, Histogram};

/// Outcomes of a call, as the `outcome` label of `holdfast_calls_total`.
const CALL_OUTCOMES: [&str; 8] = [
    "ok",
    "error",
    "expired",
    "dead",
    "backlog",
    "unavailable",
    "deadline",
    "shutdown",
];

/// Outcomes of a handled entry, as the `outcome` label of
/// `holdfast_worker_handled_total`.
const HANDLED_OUTCOMES: [&str; 5] = ["ok", "error", "expired", "dead", "retry"];

fn counters(
    name: &'static str,
    topic: &Topic,
    outcomes: &[&'static str],
) -> Vec<(&'static str, Counter)> {
    outcomes
        .iter()
        .map(|o| {
            (
                *o,
                metrics::counter!(name, "topic" => topic.to_string(), "outcome" => *o),
            )
        })
        .collect()
}

fn find<'a>(counters: &'a [(&'static str, Counter)], outcome: &str) -> Option<&'a Counter> {
    counters.iter().find(|(o, _)| *o == outcome).map(|(_, c)| c)
}

/// A caller's figures for one topic.
pub(crate) struct CallMeters {
    calls: Vec<(&'static str, Counter)>,
    duration: Histogram,
    jobs: Counter,
}

impl CallMeters {
    pub(crate) fn new(topic: &Topic) -> Self {
        Self {
            calls: counters(metric_names::CALLS, topic, &CALL_OUTCOMES),
            duration: metrics::histogram!(metric_names::CALL_DURATION, "topic" => topic.to_string()),
            jobs: metrics::counter!(metric_names::JOBS_ENQUEUED, "topic" => topic.to_string()),
        }
    }

    pub(crate) fn call(&self, outcome: &str, elapsed: Duration) {
        if let Some(c) = find(&self.calls, outcome) {
            c.increment(1);
        }
        self.duration.record(elapsed.as_secs_f64());
    }

    pub(crate) fn job(&self) {
        self.jobs.increment(1);
    }
}

/// A worker's figures for its topic.
pub(crate) struct WorkerMeters {
    pub(crate) active: Gauge,
    pub(crate) duration: Histogram,
    pub(crate) backlog: Gauge,
    pub(crate) claimed: Counter,
    handled: Vec<(&'static str, Counter)>,
    topic: Topic,
}

impl WorkerMeters {
    pub(crate) fn new(topic: &Topic) -> Self {
        Self {
            active: metrics::gauge!(metric_names::WORKER_ACTIVE, "topic" => topic.to_string()),
            duration: metrics::histogram!(metric_names::WORKER_HANDLE_DURATION, "topic" => topic.to_string()),
            backlog: metrics::gauge!(metric_names::TOPIC_BACKLOG, "topic" => topic.to_string()),
            claimed: metrics::counter!(metric_names::WORKER_CLAIMED, "topic" => topic.to_string()),
            handled: counters(metric_names::WORKER_HANDLED, topic, &HANDLED_OUTCOMES),
            topic: topic.clone(),
        }
    }

    pub(crate) fn handled(&self, outcome: &str) {
        if let Some(c) = find(&self.handled, outcome) {
            c.increment(1);
        }
    }

    /// Dead letters are rare; their reason label is open-ended, so no cache.
    pub(crate) fn dead_letter(&self, reason: &'static str) {
        metrics::counter!(metric_names::DEAD_LETTERS, "topic" => self.topic.to_string(), "reason" => reason)
            .increment(1);
    }
}
