//! Health endpoints and the admin router.
//!
//! `/health/live` answers while the process can serve at all; an
//! orchestrator restarts it when it does not. `/health/ready` answers 200
//! only when the dependencies this role needs answer (or a declared
//! degraded mode is active); load balancers route by it. `/health` is the
//! detailed JSON for people and the dashboard: Redis state, breaker,
//! transition history and the role's own figures. The admin listener also
//! serves `/metrics` and `/logs` (this process's last log lines), and its
//! own OpenAPI document at `/api-docs/openapi.json` (Swagger UI at
//! `/swagger-ui/`); the probes are also in every public listener's
//! document ([`probes_document`]).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use holdfast_redis::{ConnState, Redis};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use crate::problem::listener_doc::parameter;
use crate::problem::responses::BadRequest;
use crate::problem::{ApiError, Problem};

/// What a role says about its health.
pub trait HealthCheck: Send + Sync + 'static {
    /// Reasons the role is not ready; empty when ready.
    fn not_ready_reasons(&self) -> Vec<String>;
    /// The detailed report for `/health`.
    fn detail(&self) -> serde_json::Value;
}

/// Shared handle to a role's health check.
pub type Health = Arc<dyn HealthCheck>;

/// Why a role that cannot work without Redis is not ready, while Redis is
/// not: `redis is {state}`.
pub(crate) fn redis_not_ready(redis: &Redis) -> Option<String> {
    let state = redis.state();
    (state != ConnState::Ready).then(|| format!("redis is {}", state.as_str()))
}

/// What `/health/live` answers: always `live`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum LiveStatus {
    Live,
}

/// `/health/live`'s answer.
#[derive(Serialize, ToSchema)]
struct Live {
    status: LiveStatus,
}

/// What `/health/ready` answers: `ready` (200) or `not_ready` (503).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    Ready,
    NotReady,
}

/// `/health/ready`'s answer.
#[derive(Serialize, ToSchema)]
struct Ready {
    status: ReadyStatus,
    /// Why the role is not ready; only when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<Vec<String>>,
}

/// `/health`'s answer: these fields, and the role's own figures beside
/// them (Redis with its history, breaker, backlog, cache, database...).
#[derive(ToSchema)]
#[allow(dead_code)] // The shape of a JSON value built by each role.
struct HealthDetail {
    /// The role: `ingress`, `worker` or `api`.
    role: String,
    /// Whether `/health/ready` answers 200.
    ready: bool,
    /// Why not, when not.
    not_ready_reasons: Vec<String>,
}

/// The process serves.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "The process serves", body = Live))
)]
async fn live() -> Response {
    Json(Live {
        status: LiveStatus::Live,
    })
    .into_response()
}

/// Whether the dependencies this role needs answer (or a declared degraded
/// mode is active): load balancers route by it.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready (`status` is `ready`)", body = Ready),
        (status = 503, description = "Not ready (`status` is `not_ready`, with the reasons)", body = Ready),
    )
)]
async fn ready(State(health): State<Health>) -> Response {
    let reasons = health.not_ready_reasons();
    if reasons.is_empty() {
        Json(Ready {
            status: ReadyStatus::Ready,
            reasons: None,
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                status: ReadyStatus::NotReady,
                reasons: Some(reasons),
            }),
        )
            .into_response()
    }
}

/// The detailed report, for people and the dashboard: 200 whether ready
/// or not.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "The role's report", body = HealthDetail))
)]
async fn detail(State(health): State<Health>) -> Response {
    let reasons = health.not_ready_reasons();
    let mut body = health.detail();
    if let Some(map) = body.as_object_mut() {
        map.insert("ready".into(), json!(reasons.is_empty()));
        map.insert("not_ready_reasons".into(), json!(reasons));
    }
    Json(body).into_response()
}

/// This process's metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            holdfast_telemetry::exposition::CONTENT_TYPE,
        )],
        holdfast_telemetry::render(),
    )
        .into_response()
}

/// `/health/live`, `/health/ready` and `/health`.
pub fn health_routes(health: Health) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health", get(detail))
        .with_state(health)
}

/// The levels `/logs` takes, most severe first.
const LEVELS: [(&str, tracing::Level); 5] = [
    ("error", tracing::Level::ERROR),
    ("warn", tracing::Level::WARN),
    ("info", tracing::Level::INFO),
    ("debug", tracing::Level::DEBUG),
    ("trace", tracing::Level::TRACE),
];

/// A level as `/logs` takes it: one of [`LEVELS`]' names, as written
/// there (not tracing's own parse, which also takes `WARN` or `2`).
fn log_level(text: &str) -> Result<tracing::Level, ApiError> {
    LEVELS
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, level)| *level)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_level",
                format!("level {text:?} is not one of error, warn, info, debug, trace"),
            )
        })
}

/// A count of lines: a non-negative decimal integer (a `+` allowed, as
/// Rust's own parse takes it), any size, saturated at `usize::MAX`.
fn line_count(text: &str) -> Option<usize> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(usize::MAX))
}

/// What `/logs` may be asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// Read as text, so that any count is taken (see [`line_count`]).
    limit: Option<String>,
    /// Read as text, so that a bad one gets its own code.
    level: Option<String>,
}

/// [`LogsQuery`] as documented.
struct LogsParams;

impl utoipa::IntoParams for LogsParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::ParameterIn::Query;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let count = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0));
        let level = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(LEVELS.map(|(name, _)| name)));
        vec![
            parameter(
                "limit",
                Query,
                false,
                "Most lines returned: any count (all that are kept, at most 500, when absent or larger)",
                count,
            ),
            parameter(
                "level",
                Query,
                false,
                "The least severe level returned (default: every level the process logs)",
                level,
            ),
        ]
    }
}

/// A level name, for the document (the query reads it as text).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Read through `log_level`.
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// One line of `/logs` (the shape of `holdfast_telemetry`'s `LogLine`).
#[derive(ToSchema)]
#[allow(dead_code)] // The shape of what `recent_logs` serializes.
struct LogLineSchema {
    /// When it was logged, in unix milliseconds.
    at_unix_ms: u64,
    // No doc comment: utoipa would wrap the inlined enum in an `allOf`
    // with an `object` of that description.
    #[schema(inline)]
    level: LogLevel,
    /// The module that logged it.
    target: String,
    /// The message, then its fields as `name=value`.
    text: String,
}

/// `/logs`' answer.
#[derive(ToSchema)]
#[allow(dead_code)] // The shape of a JSON value.
struct LogLines {
    /// Oldest first.
    lines: Vec<LogLineSchema>,
}

/// `GET /logs`: the last lines this process logged, oldest first.
///
/// 400 `invalid_query` for an unknown parameter or a `limit` that is not a
/// count, `invalid_level` for an unknown level.
#[utoipa::path(
    get,
    path = "/logs",
    tag = "admin",
    params(LogsParams),
    responses(
        (status = 200, description = "The lines", body = LogLines),
        BadRequest,
    )
)]
async fn logs(query: Result<Query<LogsQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let level = match query.level.as_deref() {
        None => tracing::Level::TRACE,
        Some(text) => log_level(text)?,
    };
    let limit = match query.limit.as_deref() {
        None => usize::MAX,
        Some(text) => line_count(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("limit {text:?} is not a count of lines"),
            )
        })?,
    };
    let lines = holdfast_telemetry::recent_logs::recent_logs().last(limit, level);
    Ok(Json(json!({ "lines": lines })).into_response())
}

/// `/logs`: this process's last log lines.
pub fn logs_routes() -> Router {
    Router::new().route("/logs", get(logs))
}

/// The admin listener's router: health, `/metrics`, `/logs`, and its
/// OpenAPI document with Swagger UI.
pub fn admin_router(health: Health) -> Router {
    health_routes(health)
        .route("/metrics", get(metrics))
        .merge(logs_routes())
        .merge(crate::http::swagger_ui(admin_document()))
}

#[derive(OpenApi)]
#[openapi(
    paths(live, ready, detail),
    components(schemas(Problem, Live, Ready, HealthDetail))
)]
struct ProbesDoc;

/// The health probes, as every listener that serves them documents them.
pub(crate) fn probes_document() -> utoipa::openapi::OpenApi {
    ProbesDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "holdfast admin",
        description = "The admin listener of a role (ingress, worker, api): health probes, metrics and recent logs. No middleware stack stands in front of it (no rate limit, body or time limits); the listener answers 503 `too_many_connections` itself beyond its cap on open connections."
    ),
    paths(live, ready, detail, metrics, logs),
    components(schemas(Problem, Live, Ready, HealthDetail, LogLines, LogLineSchema))
)]
struct AdminDoc;

/// The admin listener's OpenAPI document.
pub fn admin_document() -> utoipa::openapi::OpenApi {
    crate::problem::listener_doc::admin(AdminDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_level_is_one_of_the_five_names_as_written() {
        assert_eq!(log_level("warn").unwrap(), tracing::Level::WARN);
        assert_eq!(log_level("trace").unwrap(), tracing::Level::TRACE);
        for refused in ["WARN", "Warn", "2", "+2", "", "loud"] {
            let err = log_level(refused).unwrap_err();
            assert_eq!(err.code(), "invalid_level", "{refused:?}");
        }
    }

    #[test]
    fn a_line_count_is_any_non_negative_integer() {
        assert_eq!(line_count("0"), Some(0));
        assert_eq!(line_count("+12"), Some(12));
        assert_eq!(line_count("99999999999999999999999"), Some(usize::MAX));
        for refused in ["", "+", "-1", "1.5", "ten", " 1"] {
            assert_eq!(line_count(refused), None, "{refused:?}");
        }
    }
}
