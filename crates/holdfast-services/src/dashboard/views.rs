//! The read-only views besides the overview and the streams:
//!
//! - **Logs**: the recent lines of every instance (its admin `/logs`),
//!   newest first, filtered by level and instance.
//! - **Users**: a search by name or email through the api, each result read
//!   once more by id through the api's cache, so the page says where each
//!   answer came from (`cache`, `db`, `stale`) and how long it took.
//! - **Cache**: per entity, from the api's `/metrics`: reads by outcome, hit
//!   ratio, stale served, fallbacks to the database, loader errors and
//!   latency, keys warmed at start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use holdfast_core::metric_names as names;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::charts::quantile_ms;
use super::scrape::samples;
use super::{AppState, html};
use crate::problem::ApiError;
use crate::problem::responses::{BadRequest, ServiceUnavailable};
use crate::registry::Instance;

/// How long the dashboard waits for one instance's logs or the api.
pub const VIEW_TIMEOUT: Duration = Duration::from_secs(2);

/// Most lines a logs view shows.
pub const MAX_LOG_LINES: usize = 500;

/// The filter of the logs view.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// The least level shown: error, warn, info (default), debug, trace.
    pub level: Option<String>,
    /// Only this instance (its id).
    pub instance: Option<String>,
}

/// One log line of one instance.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceLine {
    /// The instance's role.
    pub role: String,
    /// The instance's id.
    pub instance: String,
    /// When, Unix milliseconds.
    pub at_unix_ms: u64,
    /// Its level.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub text: String,
}

#[derive(Deserialize)]
struct LinesAnswer {
    lines: Vec<LineAnswer>,
}

#[derive(Deserialize)]
struct LineAnswer {
    at_unix_ms: u64,
    level: String,
    target: String,
    text: String,
}

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

async fn logs(shared: &AppState, query: &LogsQuery) -> Result<Vec<InstanceLine>, ApiError> {
    let level = query.level.clone().unwrap_or_else(|| "info".into());
    if !LEVELS.contains(&level.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_level",
            format!("level {level:?} is not one of {}", LEVELS.join(", ")),
        ));
    }
    let instances: Vec<Instance> = shared
        .reader
        .known()
        .into_iter()
        .filter(|i| query.instance.as_ref().is_none_or(|id| &i.instance == id))
        .collect();
    let mut asking = tokio::task::JoinSet::new();
    for instance in instances {
        let Some(url) = instance.admin_url.clone() else {
            continue;
        };
        let client = shared.reader.client().clone();
        let level = level.clone();
        asking.spawn(async move {
            let answer: Option<LinesAnswer> = async {
                let url = reqwest::Url::parse_with_params(
                    &format!("{url}/logs"),
                    &[("level", level.as_str()), ("limit", "200")],
                )
                .ok()?;
                client
                    .get(url)
                    .timeout(VIEW_TIMEOUT)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()
            }
            .await;
            answer
                .map(|a| a.lines)
                .unwrap_or_default()
                .into_iter()
                .map(|l| InstanceLine {
                    role: instance.role.clone(),
                    instance: instance.instance.clone(),
                    at_unix_ms: l.at_unix_ms,
                    level: l.level,
                    target: l.target,
                    text: l.text,
                })
                .collect::<Vec<_>>()
        });
    }
    let mut lines = Vec::new();
    while let Some(done) = asking.join_next().await {
        lines.extend(done.unwrap_or_default());
    }
    lines.sort_by_key(|line| std::cmp::Reverse(line.at_unix_ms));
    lines.truncate(MAX_LOG_LINES);
    Ok(lines)
}

/// The recent log lines of every instance, newest first.
#[utoipa::path(
    get,
    path = "/api/dashboard/logs",
    tag = "views",
    params(LogsQuery),
    responses(
        (status = 200, description = "At most 500 lines, newest first", body = [InstanceLine]),
        BadRequest,
    )
)]
pub(super) async fn logs_json(
    State(shared): State<AppState>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(logs(&shared, &query).await?).into_response())
}

/// The logs page.
#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    nav: &'static str,
    level: String,
    instance: String,
    instances: Vec<Instance>,
    levels: [&'static str; 5],
    lines: Vec<InstanceLine>,
    error: Option<String>,
}

impl LogsPage {
    fn time(&self, at_unix_ms: &u64) -> String {
        let ms = at_unix_ms % 1000;
        let s = at_unix_ms / 1000 % 86_400;
        format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
    }
}

pub(super) async fn logs_page(
    State(shared): State<AppState>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let (lines, error) = match logs(&shared, &query).await {
        Ok(lines) => (lines, None),
        Err(err) => (Vec::new(), Some(err.detail().to_owned())),
    };
    let mut instances = shared.reader.known();
    instances.sort_by(|a, b| (&a.role, &a.instance).cmp(&(&b.role, &b.instance)));
    html(&LogsPage {
        nav: "logs",
        level: query.level.unwrap_or_else(|| "info".into()),
        instance: query.instance.unwrap_or_default(),
        instances,
        levels: LEVELS,
        lines,
        error,
    })
}

/// The public URL of a running api, from the registry.
fn api_url(shared: &AppState) -> Result<String, ApiError> {
    shared
        .reader
        .first_of("api")
        .and_then(|i| i.public_url)
        .ok_or_else(no_api)
}

/// The api's admin URL (`/metrics`), from the registry.
fn api_admin_url(shared: &AppState) -> Result<String, ApiError> {
    shared
        .reader
        .first_of("api")
        .and_then(|i| i.admin_url)
        .ok_or_else(no_api)
}

fn no_api() -> ApiError {
    ApiError::unavailable(
        "no_api",
        "no api instance is registered: this view reads through the api",
        Duration::from_secs(2),
    )
}

/// A search of the users view.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct UsersQuery {
    /// Text to find in names and emails.
    pub q: Option<String>,
}

/// One user found, with where its answer came from.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FoundUser {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its email.
    pub email: String,
    /// Where the read by id was answered from: `cache`, `db`, `stale`, or
    /// what went wrong.
    pub source: String,
    /// How long that read took, milliseconds.
    pub took_ms: f64,
}

async fn search(shared: &AppState, q: &str) -> Result<Vec<FoundUser>, ApiError> {
    let api = api_url(shared)?;
    let client = shared.reader.client();
    let url = reqwest::Url::parse_with_params(
        &format!("{api}/api/users/search"),
        &[("q", q), ("limit", "20")],
    )
    .map_err(|err| ApiError::internal(format!("the api's URL {api}: {err}")))?;
    let answer = client
        .get(url)
        .timeout(VIEW_TIMEOUT)
        .send()
        .await
        .map_err(|err| {
            ApiError::unavailable(
                "api_unreachable",
                format!("the api did not answer: {err}"),
                Duration::from_secs(1),
            )
        })?;
    if !answer.status().is_success() {
        let status = answer.status();
        let problem: Value = answer.json().await.unwrap_or_default();
        let detail = format!(
            "the api answered {status}: {}",
            problem["detail"].as_str().unwrap_or("")
        );
        // The search text is the caller's; anything else is the api's.
        return Err(if status.is_client_error() {
            ApiError::bad_request("search_refused", detail)
        } else {
            ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "api_failed", detail)
        });
    }
    let users: Vec<Value> = answer.json().await.unwrap_or_default();
    let mut reading = tokio::task::JoinSet::new();
    for (order, user) in users.into_iter().enumerate() {
        let client = client.clone();
        let api = api.clone();
        reading.spawn(async move {
            let id = user["id"].as_i64().unwrap_or(0);
            let started = Instant::now();
            let source = match client
                .get(format!("{api}/api/users/{id}"))
                .timeout(VIEW_TIMEOUT)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["source"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into()),
                Ok(r) => format!("answer {}", r.status().as_u16()),
                Err(err) => format!("no answer: {err}"),
            };
            let took_ms = started.elapsed().as_secs_f64() * 1000.0;
            let text = |name: &str| user[name].as_str().unwrap_or("").to_owned();
            (
                order,
                FoundUser {
                    id,
                    name: text("name"),
                    email: text("email"),
                    source,
                    took_ms,
                },
            )
        });
    }
    let mut found = Vec::new();
    while let Some(done) = reading.join_next().await {
        if let Ok(one) = done {
            found.push(one);
        }
    }
    found.sort_by_key(|(order, _)| *order);
    Ok(found.into_iter().map(|(_, user)| user).collect())
}

/// Users found by name or email, each read by id through the cache.
#[utoipa::path(
    get,
    path = "/api/dashboard/users",
    tag = "views",
    params(UsersQuery),
    responses(
        (status = 200, description = "Up to 20 users, each with the source of its read by id", body = [FoundUser]),
        BadRequest,
        ServiceUnavailable,
    )
)]
pub(super) async fn users_json(
    State(shared): State<AppState>,
    Query(query): Query<UsersQuery>,
) -> Result<Response, ApiError> {
    let q = query.q.unwrap_or_default();
    Ok(Json(search(&shared, &q).await?).into_response())
}

/// The users page.
#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: &'static str,
    q: String,
    users: Vec<FoundUser>,
    searched: bool,
    error: Option<String>,
}

pub(super) async fn users_page(
    State(shared): State<AppState>,
    Query(query): Query<UsersQuery>,
) -> Response {
    let q = query.q.unwrap_or_default();
    let (users, error) = if q.is_empty() {
        (Vec::new(), None)
    } else {
        match search(&shared, &q).await {
            Ok(users) => (users, None),
            Err(err) => (Vec::new(), Some(err.detail().to_owned())),
        }
    };
    html(&UsersPage {
        nav: "users",
        searched: !q.is_empty(),
        q,
        users,
        error,
    })
}

/// One entity's cache figures since the api started.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct EntityCache {
    /// `product`, `user`, `order`.
    pub entity: String,
    /// Reads by outcome: hit, miss, stale, bypass, error.
    pub reads: BTreeMap<String, u64>,
    /// Hits over all reads, percent (none when nothing was read).
    pub hit_ratio_percent: Option<f64>,
    /// Keys loaded by the warm-up at start.
    pub warmed: u64,
    /// Loader (database) calls that failed.
    pub loader_errors: u64,
    /// Loader calls.
    pub loader_calls: u64,
    /// Median loader latency, milliseconds.
    pub loader_p50_ms: Option<f64>,
    /// 99th percentile loader latency, milliseconds.
    pub loader_p99_ms: Option<f64>,
}

async fn cache(shared: &AppState) -> Result<Vec<EntityCache>, ApiError> {
    let api = api_admin_url(shared)?;
    let text = shared
        .reader
        .client()
        .get(format!("{api}/metrics"))
        .timeout(VIEW_TIMEOUT)
        .send()
        .await
        .map_err(|err| {
            ApiError::unavailable(
                "api_unreachable",
                format!("the api did not answer: {err}"),
                Duration::from_secs(1),
            )
        })?
        .text()
        .await
        .unwrap_or_default();
    Ok(entities(&text))
}

/// The cache figures in an api's `/metrics` text, by entity.
fn entities(text: &str) -> Vec<EntityCache> {
    let mut by: BTreeMap<String, EntityCache> = BTreeMap::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let loader_bucket = format!("{}_bucket", names::CACHE_LOADER_DURATION);
    let loader_count = format!("{}_count", names::CACHE_LOADER_DURATION);
    for sample in samples(text) {
        let Some(entity) = sample.label("entity").map(str::to_owned) else {
            continue;
        };
        let entry = by.entry(entity.clone()).or_insert_with(|| EntityCache {
            entity: entity.clone(),
            ..EntityCache::default()
        });
        let value = sample.value.max(0.0) as u64;
        if sample.name == names::CACHE_READS {
            let outcome = sample.label("outcome").unwrap_or("other").to_owned();
            *entry.reads.entry(outcome).or_default() += value;
        } else if sample.name == names::CACHE_WARMED {
            entry.warmed += value;
        } else if sample.name == names::CACHE_LOADER_ERRORS {
            entry.loader_errors += value;
        } else if sample.name == loader_count {
            entry.loader_calls += value;
        } else if sample.name == loader_bucket {
            let le = match sample.label("le") {
                Some("+Inf") | None => f64::INFINITY,
                Some(le) => le.parse().unwrap_or(f64::INFINITY),
            };
            buckets.entry(entity).or_default().push((le, sample.value));
        }
    }
    for entry in by.values_mut() {
        let total: u64 = entry.reads.values().sum();
        let hits = entry.reads.get("hit").copied().unwrap_or(0);
        entry.hit_ratio_percent = (total > 0).then(|| hits as f64 * 100.0 / total as f64);
        if let Some(b) = buckets.get_mut(&entry.entity) {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            let quantile = |q| Some(quantile_ms(b, q)).filter(|v| v.is_finite());
            entry.loader_p50_ms = quantile(0.5);
            entry.loader_p99_ms = quantile(0.99);
        }
    }
    by.into_values()
        .filter(|e| !e.reads.is_empty() || e.warmed > 0)
        .collect()
}

/// The cache's figures per entity, from the api.
#[utoipa::path(
    get,
    path = "/api/dashboard/cache",
    tag = "views",
    responses(
        (status = 200, description = "Per entity: reads by outcome, hit ratio, warmed keys, loader calls, errors and latency", body = [EntityCache]),
        ServiceUnavailable,
    )
)]
pub(super) async fn cache_json(State(shared): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(cache(&shared).await?).into_response())
}

/// The cache page.
#[derive(Template)]
#[template(path = "cache.html")]
struct CachePage {
    nav: &'static str,
    entities: Vec<EntityCache>,
    error: Option<String>,
}

impl CachePage {
    fn reads(&self, entity: &EntityCache, outcome: &str) -> u64 {
        entity.reads.get(outcome).copied().unwrap_or(0)
    }

    fn number(&self, value: &Option<f64>, unit: &str) -> String {
        value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}{unit}"))
    }
}

pub(super) async fn cache_page(State(shared): State<AppState>) -> Response {
    let (entities, error) = match cache(&shared).await {
        Ok(entities) => (entities, None),
        Err(err) => (Vec::new(), Some(err.detail().to_owned())),
    };
    html(&CachePage {
        nav: "cache",
        entities,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_figures_are_read_per_entity() {
        let text = "\
holdfast_cache_reads_total{entity=\"product\",outcome=\"hit\"} 90
holdfast_cache_reads_total{entity=\"product\",outcome=\"miss\"} 10
holdfast_cache_warmed_total{entity=\"product\"} 100
holdfast_cache_loader_duration_seconds_bucket{entity=\"product\",le=\"0.01\"} 5
holdfast_cache_loader_duration_seconds_bucket{entity=\"product\",le=\"2.5\"} 10
holdfast_cache_loader_duration_seconds_bucket{entity=\"product\",le=\"+Inf\"} 10
holdfast_cache_loader_duration_seconds_count{entity=\"product\"} 10
holdfast_http_requests_total{route=\"/x\",status=\"2xx\"} 4
";
        let all = entities(text);
        assert_eq!(all.len(), 1);
        let product = &all[0];
        assert_eq!(product.entity, "product");
        assert_eq!(product.hit_ratio_percent, Some(90.0));
        assert_eq!((product.warmed, product.loader_calls), (100, 10));
        assert_eq!(product.loader_p50_ms, Some(10.0));
        assert!(product.loader_p99_ms.unwrap() > 2000.0);
    }
}
