//! The live charts: once a second every known instance's `/metrics` is
//! read, turned into what happened in that second (counter differences,
//! latency quantiles from histogram bucket differences), and kept for five
//! minutes in memory.
//!
//! | chart | from | series |
//! |---|---|---|
//! | requests | ingress and api (`holdfast_http_*`, admin routes left out), workers (`holdfast_worker_handle*`) | per role: answered/s, errors/s (HTTP 5xx; handler outcomes other than `ok`), p50 and p99 |
//! | cache | api (`holdfast_cache_reads_total`) | reads/s by outcome: hit, miss, stale, bypass, error |
//! | topics | exporter (`holdfast_topic_lag`, `_pending`, `_length`) | per topic: lag and pending entries |
//!
//! They are drawn by the chaos report's chart code, with the stack's chaos
//! actions as shaded, labelled bands and its events as markers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use holdfast_chaos::report::{Event, FaultWindow, LoadSeries, RunReport, SecondPoint};
use holdfast_chaos::stack_control::StackView;
use holdfast_core::metric_names as names;
use serde::Serialize;

use super::scrape::{Sample, samples};
use crate::registry::Instance;

/// How long the charts reach back.
pub const KEPT: Duration = Duration::from_secs(300);

/// How often a point is taken.
pub const EVERY: Duration = Duration::from_secs(1);

/// How long one instance's `/metrics` may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// Routes of the admin side, left out of the request rates.
const ADMIN_ROUTES: [&str; 4] = ["/health", "/metrics", "/logs", "/api/dashboard"];

/// One role's second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RolePoint {
    /// Answered in that second.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Median latency, milliseconds (NaN when nothing was answered).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds (NaN when nothing was answered).
    pub p99_ms: f64,
}

/// One topic at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopicPoint {
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// Entries in the streams.
    pub length: u64,
}

/// One second of the stack.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tick {
    /// When, Unix milliseconds.
    pub at_unix_ms: u64,
    /// By role (`ingress`, `api`, `worker`).
    pub roles: BTreeMap<String, RolePoint>,
    /// Cache reads in that second, by outcome.
    pub cache: BTreeMap<String, u64>,
    /// By topic.
    pub topics: BTreeMap<String, TopicPoint>,
}

/// What one instance's counters stood at.
#[derive(Clone, Debug, Default, PartialEq)]
struct Totals {
    requests: f64,
    errors: f64,
    /// Cumulative bucket counts by upper bound.
    buckets: BTreeMap<Bound, f64>,
    cache: BTreeMap<String, f64>,
    topics: BTreeMap<String, TopicPoint>,
}

/// A bucket's upper bound, ordered (`+Inf` last).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bound(f64);
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn is_admin(route: Option<&str>) -> bool {
    route.is_some_and(|r| ADMIN_ROUTES.iter().any(|a| r.starts_with(a)))
}

/// What `role`'s `/metrics` text says its counters stand at.
fn totals(role: &str, text: &str) -> Totals {
    let mut totals = Totals::default();
    let (count, bucket) = match role {
        "worker" => (
            names::WORKER_HANDLED,
            "holdfast_worker_handle_duration_seconds_bucket",
        ),
        _ => (
            names::HTTP_REQUESTS,
            "holdfast_http_request_duration_seconds_bucket",
        ),
    };
    for sample in samples(text) {
        let Sample { name, value, .. } = &sample;
        if *name == count {
            if role == "worker" {
                totals.requests += value;
                if sample.label("outcome") != Some("ok") {
                    totals.errors += value;
                }
            } else if !is_admin(sample.label("route")) {
                totals.requests += value;
                if sample.label("status") == Some("5xx") {
                    totals.errors += value;
                }
            }
        } else if *name == bucket && !is_admin(sample.label("route")) {
            let le = match sample.label("le") {
                Some("+Inf") => f64::INFINITY,
                Some(le) => le.parse().unwrap_or(f64::INFINITY),
                None => continue,
            };
            *totals.buckets.entry(Bound(le)).or_default() += value;
        } else if *name == names::CACHE_READS {
            let outcome = sample.label("outcome").unwrap_or("other").to_owned();
            *totals.cache.entry(outcome).or_default() += value;
        } else if *name == names::EXPORTER_TOPIC_LAG
            || *name == names::EXPORTER_TOPIC_PENDING
            || *name == names::EXPORTER_TOPIC_LENGTH
        {
            let topic = sample.label("topic").unwrap_or("?").to_owned();
            let point = totals.topics.entry(topic).or_default();
            let v = value.max(0.0) as u64;
            match *name {
                n if n == names::EXPORTER_TOPIC_LAG => point.lag += v,
                n if n == names::EXPORTER_TOPIC_PENDING => point.pending += v,
                _ => point.length += v,
            }
        }
    }
    totals
}

/// A counter's growth; a counter that went down was reset (its process
/// started again), so all of it is new.
fn growth(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now }
}

/// The `q` quantile, in milliseconds, of the observations whose cumulative
/// bucket counts are `buckets` (upper bound in seconds, count; in order of
/// bound), interpolated inside the bucket it falls in; NaN when empty.
pub(super) fn quantile_ms(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |&(_, count)| count);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, cumulative) in buckets {
        if cumulative >= rank {
            if le.is_infinite() {
                return lower * 1000.0;
            }
            let inside = cumulative - below;
            let share = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return (lower + (le - lower) * share) * 1000.0;
        }
        lower = le;
        below = cumulative;
    }
    lower * 1000.0
}

/// The five minutes of points, and the counters they were made from.
#[derive(Debug, Default)]
pub struct Charts {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By instance id: its role and what its counters stood at.
    before: HashMap<String, (String, Totals)>,
    ticks: VecDeque<Tick>,
}

impl Charts {
    /// Reads every instance's `/metrics` at once and adds the second.
    pub async fn sample(&self, client: &reqwest::Client, instances: &[Instance], now_unix_ms: u64) {
        let mut reading = tokio::task::JoinSet::new();
        for instance in instances {
            let Some(url) = instance.admin_url.clone() else {
                continue;
            };
            let client = client.clone();
            let id = instance.instance.clone();
            let role = instance.role.clone();
            reading.spawn(async move {
                let text = async {
                    client
                        .get(format!("{url}/metrics"))
                        .timeout(SCRAPE_TIMEOUT)
                        .send()
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()
                }
                .await;
                (id, role, text)
            });
        }
        let mut read = Vec::new();
        while let Some(done) = reading.join_next().await {
            if let Ok((id, role, Some(text))) = done {
                let totals = totals(&role, &text);
                read.push((id, role, totals));
            }
        }
        self.add(read, now_unix_ms);
    }

    fn add(&self, read: Vec<(String, String, Totals)>, now_unix_ms: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut tick = Tick {
            at_unix_ms: now_unix_ms,
            ..Tick::default()
        };
        let mut buckets: BTreeMap<String, BTreeMap<Bound, f64>> = BTreeMap::new();
        for (id, role, now) in read {
            for (topic, point) in &now.topics {
                let sum = tick.topics.entry(topic.clone()).or_default();
                sum.lag += point.lag;
                sum.pending += point.pending;
                sum.length += point.length;
            }
            if let Some((_, before)) = inner.before.get(&id) {
                let counted = matches!(role.as_str(), "ingress" | "api" | "worker");
                if counted {
                    let point = tick.roles.entry(role.clone()).or_default();
                    point.requests += growth(now.requests, before.requests) as u64;
                    point.errors += growth(now.errors, before.errors) as u64;
                    let role_buckets = buckets.entry(role.clone()).or_default();
                    for (bound, &count) in &now.buckets {
                        let was = before.buckets.get(bound).copied().unwrap_or(0.0);
                        *role_buckets.entry(*bound).or_default() += growth(count, was);
                    }
                }
                for (outcome, &count) in &now.cache {
                    let was = before.cache.get(outcome).copied().unwrap_or(0.0);
                    *tick.cache.entry(outcome.clone()).or_default() += growth(count, was) as u64;
                }
            }
            inner.before.insert(id, (role, now));
        }
        for (role, point) in &mut tick.roles {
            let role_buckets: Vec<(f64, f64)> = buckets
                .remove(role)
                .unwrap_or_default()
                .into_iter()
                .map(|(Bound(le), count)| (le, count))
                .collect();
            point.p50_ms = quantile_ms(&role_buckets, 0.50);
            point.p99_ms = quantile_ms(&role_buckets, 0.99);
        }
        // Five minutes by the clock, however regular the ticks were.
        let oldest = now_unix_ms.saturating_sub(KEPT.as_millis() as u64);
        while inner.ticks.front().is_some_and(|t| t.at_unix_ms < oldest) {
            inner.ticks.pop_front();
        }
        inner.ticks.push_back(tick);
    }

    /// Forgets instances that are gone from the list, so a restarted one
    /// starts afresh.
    pub fn retain(&self, instances: &[Instance]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .before
            .retain(|id, _| instances.iter().any(|i| &i.instance == id));
    }

    /// Each topic's figures as the exporter reported them last.
    pub fn topics_now(&self) -> BTreeMap<String, TopicPoint> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .ticks
            .back()
            .map(|t| t.topics.clone())
            .unwrap_or_default()
    }

    /// The topics the exporter reported last.
    pub fn topics(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .ticks
            .back()
            .map(|t| t.topics.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The points kept, oldest first.
    pub fn ticks(&self) -> Vec<Tick> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.ticks.iter().cloned().collect()
    }
}

/// A series' second of a tick, if it has one: answered, errors, p99 ms.
type PointOf<'a> = dyn Fn(&Tick) -> Option<(u64, u64, f64)> + 'a;

/// The charts of `ticks` as reports for the chart code: requests per role,
/// cache reads by outcome, topic lag and pending; the stack's actions as
/// faults and its events as markers.
pub fn reports(ticks: &[Tick], stack: Option<&StackView>) -> [RunReport; 3] {
    let start = ticks.first().map_or(0, |t| t.at_unix_ms);
    let end = ticks.last().map_or(start, |t| t.at_unix_ms);
    let second = |at: u64| at.saturating_sub(start) / 1000;
    let at_s = |at: u64| at.saturating_sub(start) as f64 / 1000.0;
    let duration_s = (at_s(end) + 1.0).max(10.0);
    let series = |name: String, point: &PointOf<'_>| {
        let timeline: Vec<SecondPoint> = ticks
            .iter()
            .filter_map(|t| {
                point(t).map(|(requests, errors, p99_ms)| SecondPoint {
                    second: second(t.at_unix_ms),
                    requests,
                    ok: requests.saturating_sub(errors),
                    errors,
                    p99_ms,
                })
            })
            .collect();
        let requests = timeline.iter().map(|p| p.requests).sum();
        let errors = timeline.iter().map(|p| p.errors).sum();
        LoadSeries {
            name,
            target: String::new(),
            requests,
            ok: requests - errors,
            errors,
            rps: requests as f64 / duration_s,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            timeline,
        }
    };
    let roles: std::collections::BTreeSet<&String> =
        ticks.iter().flat_map(|t| t.roles.keys()).collect();
    let requests = roles
        .into_iter()
        .map(|role| {
            series(role.clone(), &|t: &Tick| {
                t.roles.get(role).map(|p| (p.requests, p.errors, p.p99_ms))
            })
        })
        .collect();
    let outcomes: std::collections::BTreeSet<&String> =
        ticks.iter().flat_map(|t| t.cache.keys()).collect();
    let cache = outcomes
        .into_iter()
        .map(|outcome| {
            let errors = outcome == "error";
            series(format!("cache {outcome}"), &|t: &Tick| {
                t.cache.get(outcome).map(|&n| {
                    if errors {
                        (n, n, f64::NAN)
                    } else {
                        (n, 0, f64::NAN)
                    }
                })
            })
        })
        .collect();
    let topic_names: std::collections::BTreeSet<&String> =
        ticks.iter().flat_map(|t| t.topics.keys()).collect();
    let topics = topic_names
        .into_iter()
        .flat_map(|topic| {
            [
                series(format!("{topic} lag"), &|t: &Tick| {
                    t.topics.get(topic).map(|p| (p.lag, 0, f64::NAN))
                }),
                series(format!("{topic} pending"), &|t: &Tick| {
                    t.topics.get(topic).map(|p| (p.pending, 0, f64::NAN))
                }),
            ]
        })
        .collect();
    let faults: Vec<FaultWindow> = stack
        .map(|s| {
            s.past
                .iter()
                .chain(s.running.iter())
                .filter(|a| a.ended_at_unix_ms.is_none_or(|ended| ended >= start))
                .filter(|a| a.action != "kill-worker")
                .map(|a| FaultWindow {
                    name: a.label.clone(),
                    kind: a.action.clone(),
                    start_s: at_s(a.started_at_unix_ms.max(start)),
                    end_s: a.ended_at_unix_ms.map(at_s),
                    recovery_s: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let events: Vec<Event> = stack
        .map(|s| {
            s.events
                .iter()
                .filter(|e| e.at_unix_ms >= start)
                .map(|e| Event {
                    at_s: at_s(e.at_unix_ms),
                    source: e.process.clone().unwrap_or_else(|| "stack".into()),
                    what: e.what.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let report = |name: &str, loads: Vec<LoadSeries>, with_events: bool| RunReport {
        scenario: name.to_owned(),
        description: String::new(),
        passed: true,
        short: false,
        started_at_unix_ms: start,
        duration_s,
        invariants: Vec::new(),
        faults: faults.clone(),
        events: if with_events {
            events.clone()
        } else {
            Vec::new()
        },
        loads,
        capacity: None,
    };
    [
        report("Requests by role", requests, true),
        report("Cache reads by outcome", cache, false),
        report("Topics: lag and pending entries", topics, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const API_BEFORE: &str = "\
holdfast_http_requests_total{route=\"/api/products/{id}\",method=\"GET\",status=\"2xx\"} 10
holdfast_http_requests_total{route=\"/api/products/{id}\",method=\"GET\",status=\"5xx\"} 1
holdfast_http_requests_total{route=\"/health\",method=\"GET\",status=\"2xx\"} 50
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"0.01\"} 5
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"0.1\"} 11
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"+Inf\"} 11
holdfast_cache_reads_total{entity=\"product\",outcome=\"hit\"} 7
";
    const API_AFTER: &str = "\
holdfast_http_requests_total{route=\"/api/products/{id}\",method=\"GET\",status=\"2xx\"} 108
holdfast_http_requests_total{route=\"/api/products/{id}\",method=\"GET\",status=\"5xx\"} 3
holdfast_http_requests_total{route=\"/health\",method=\"GET\",status=\"2xx\"} 99
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"0.01\"} 55
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"0.1\"} 111
holdfast_http_request_duration_seconds_bucket{route=\"/api/products/{id}\",le=\"+Inf\"} 111
holdfast_cache_reads_total{entity=\"product\",outcome=\"hit\"} 57
holdfast_cache_reads_total{entity=\"product\",outcome=\"bypass\"} 4
";

    #[test]
    fn a_second_is_the_growth_of_the_counters_without_admin_routes() {
        let charts = Charts::default();
        let read = |text: &str| vec![("api-1".to_owned(), "api".to_owned(), totals("api", text))];
        charts.add(read(API_BEFORE), 1_000);
        charts.add(read(API_AFTER), 2_000);
        let ticks = charts.ticks();
        assert_eq!(ticks.len(), 2);
        assert!(
            ticks[0].roles.is_empty(),
            "the first reading has nothing to compare with"
        );
        let api = &ticks[1].roles["api"];
        assert_eq!((api.requests, api.errors), (100, 2));
        // 50 of 100 at or below 10 ms, all at or below 100 ms.
        assert!((api.p50_ms - 10.0).abs() < 1e-6, "{}", api.p50_ms);
        assert!(api.p99_ms > 90.0 && api.p99_ms <= 100.0, "{}", api.p99_ms);
        assert_eq!(ticks[1].cache["hit"], 50);
        assert_eq!(ticks[1].cache["bypass"], 4);
    }

    #[test]
    fn a_counter_that_went_down_was_reset() {
        assert_eq!(growth(5.0, 100.0), 5.0);
        assert_eq!(growth(105.0, 100.0), 5.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn the_charts_carry_the_actions_as_bands() {
        let charts = Charts::default();
        let read = |text: &str| vec![("api-1".to_owned(), "api".to_owned(), totals("api", text))];
        charts.add(read(API_BEFORE), 1_000);
        charts.add(read(API_AFTER), 2_000);
        let [requests, cache, topics] = reports(&charts.ticks(), None);
        assert_eq!(requests.loads.len(), 1);
        assert_eq!(requests.loads[0].name, "api");
        assert_eq!(cache.loads.len(), 2);
        assert!(topics.loads.is_empty());
        let svg = holdfast_chaos::report_page::render_live_svg(
            &requests,
            "req",
            "last 5 minutes".into(),
            "answered/s · errors/s",
        );
        assert!(svg.contains("req-title"));
        assert!(!svg.contains("PASSED"));
    }
}
