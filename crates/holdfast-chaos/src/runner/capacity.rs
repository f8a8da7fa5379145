//! The capacity probe: how many calls a second the stack answers, measured
//! on the stack itself at the start of a run, so that a scenario's rates
//! follow the machine it runs on rather than numbers written for another.
//!
//! The probe is a closed-model load of calls (each slot sends its next call
//! as soon as the last is answered) with twice as many slots as the
//! workers have terminals, so the queue never empties and every terminal
//! stays busy: what is answered 2xx per second is then what the stack can
//! do. The scenario's jobs and cache reads run beside it at their own
//! rates, as they will during the run, since they take their share of the
//! same workers and cores. The first second (connections opening, the
//! drain rate being learnt) is left out, as is the last, partial one.

use std::time::Duration;

use holdfast_load::{LoadSpec, Mode, Stop};
use serde::{Deserialize, Serialize};

use super::RunError;
use crate::scenario::Scenario;
use crate::stack::Stack;

/// Terminals of one worker: the worker's default concurrency.
const TERMINALS_PER_WORKER: usize = 16;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Calls answered 2xx per second, on average over the probe's whole
    /// seconds after the first.
    pub calls_per_sec: f64,
    /// Calls in flight during the probe.
    pub concurrency: usize,
    /// Seconds the average was taken over.
    pub seconds: u64,
}

/// How long the probe runs.
fn probe_length(short: bool) -> Duration {
    if short {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(5)
    }
}

/// Measures the calls a second `stack` answers; the scenario gives the
/// deadline each call carries.
pub(super) async fn probe(
    scenario: &Scenario,
    short: bool,
    stack: &Stack,
) -> Result<Capacity, RunError> {
    let concurrency = (scenario.stack.workers * TERMINALS_PER_WORKER * 2).max(8);
    let deadline = scenario.load.deadline;
    let json = ("content-type".to_owned(), "application/json".to_owned());
    // Every load of the probe runs as long, and gives up as late.
    let load = |url: String, method, headers, body: &'static [u8], mode| LoadSpec {
        url,
        method,
        headers,
        body: bytes::Bytes::from_static(body),
        mode,
        stop: Stop {
            requests: None,
            duration: Some(probe_length(short)),
            cancel: None,
        },
        timeout: deadline + Duration::from_secs(2),
        health_check: None,
        progress: false,
    };
    let spec = load(
        format!("{}/WeatherForecast/city", stack.ingress_url),
        http::Method::POST,
        vec![
            json.clone(),
            ("x-timeout-ms".into(), deadline.as_millis().to_string()),
        ],
        br#"{"city":"Oslo"}"#,
        Mode::Concurrency(concurrency),
    );
    let beside = |url: String, method: http::Method, body: &'static [u8], rate: f64| {
        let mode = Mode::Rate {
            per_sec: rate,
            max_in_flight: 256,
        };
        load(url, method, vec![json.clone()], body, mode)
    };
    let mut others = Vec::new();
    if scenario.load.jobs_per_sec > 0.0 {
        others.push(tokio::spawn(holdfast_load::run(beside(
            format!("{}/jobs/weather", stack.ingress_url),
            http::Method::POST,
            br#"{"city":"Bergen"}"#,
            scenario.load.jobs_per_sec,
        ))));
    }
    if scenario.load.reads_per_sec > 0.0 {
        others.push(tokio::spawn(holdfast_load::run(beside(
            format!("{}/api/products/1", stack.api_url),
            http::Method::GET,
            b"",
            scenario.load.reads_per_sec,
        ))));
    }
    let report = holdfast_load::run(spec).await;
    for other in others {
        // Their figures are not the probe's: only that they ran.
        let _ = other.await;
    }
    let report = report.map_err(|source| RunError::Load {
        name: "capacity probe".into(),
        source,
    })?;
    let whole = report.duration_s.floor() as u64;
    let counted: Vec<u64> = report
        .timeline
        .iter()
        .filter(|s| s.second >= 1 && s.second < whole)
        .map(|s| s.ok)
        .collect();
    let calls_per_sec = if counted.is_empty() {
        report.ok as f64 / report.duration_s.max(1.0)
    } else {
        counted.iter().sum::<u64>() as f64 / counted.len() as f64
    };
    Ok(Capacity {
        calls_per_sec,
        concurrency,
        seconds: counted.len() as u64,
    })
}

/// The rates a scenario runs at once its capacity is known. The probe's
/// figure is calls answered with the jobs running beside them, so the
/// stack's whole capacity is that plus the jobs: calls run at `share` of
/// the whole less the jobs, and the surge's extra calls bring calls and
/// jobs together to its multiple of the whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rates {
    /// Calls per second.
    pub calls: f64,
    /// Extra calls per second during the surge.
    pub surge: f64,
}

pub(super) fn rates(scenario: &Scenario, capacity: f64) -> Rates {
    let plan = &scenario.load;
    let share = plan.capacity_share.unwrap_or(1.0);
    let whole = capacity + plan.jobs_per_sec;
    let calls = (whole * share - plan.jobs_per_sec).max(1.0);
    let surge = plan.surge.as_ref().map_or(0.0, |surge| {
        (whole * surge.times_capacity - calls - plan.jobs_per_sec).max(0.0)
    });
    Rates { calls, surge }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(body: &str) -> Scenario {
        Scenario::parse("x", &format!("name = \"x\"\ndescription = \"y\"\n{body}")).unwrap()
    }

    #[test]
    fn calls_take_the_share_left_by_the_jobs_and_the_surge_tops_up_to_its_multiple() {
        let s = scenario(
            "[load]\ncapacity_share = 0.8\njobs_per_sec = 20\n[load.surge]\ntimes_capacity = 2.0\nat = \"5s\"\nfor = \"5s\"\nshort_at = \"2s\"\nshort_for = \"2s\"\n",
        );
        // 980 calls a second answered with 20 jobs a second beside them:
        // 1000 in all.
        let r = rates(&s, 980.0);
        assert_eq!(r.calls, 780.0);
        assert_eq!(r.calls + s.load.jobs_per_sec, 800.0);
        assert_eq!(r.calls + r.surge + s.load.jobs_per_sec, 2000.0);
        // A tiny capacity still sends some calls.
        assert_eq!(rates(&s, 1.0).calls, 1.0);
    }
}
