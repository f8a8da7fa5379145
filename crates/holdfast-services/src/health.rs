//! Health endpoints and the admin router.
//!
//! `/health/live` answers while the process can serve at all; an
//! orchestrator restarts it when it does not. `/health/ready` answers 200
//! only when the dependencies this role needs answer (or a declared
//! degraded mode is active); load balancers route by it. `/health` is the
//! detailed JSON for people and the dashboard: Redis state, breaker,
//! transition history and the role's own figures. The admin listener also
//! serves `/metrics` and `/logs` (this process's last log lines).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use holdfast_redis::{ConnState, Redis};
use serde_json::json;

use crate::problem::ApiError;

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

async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

async fn ready(State(health): State<Health>) -> Response {
    let reasons = health.not_ready_reasons();
    if reasons.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
            .into_response()
    }
}

async fn detail(State(health): State<Health>) -> Response {
    let reasons = health.not_ready_reasons();
    let mut body = health.detail();
    if let Some(map) = body.as_object_mut() {
        map.insert("ready".into(), json!(reasons.is_empty()));
        map.insert("not_ready_reasons".into(), json!(reasons));
    }
    Json(body).into_response()
}

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

/// What `/logs` may be asked for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// Most lines returned (default and cap: all that are kept).
    limit: Option<usize>,
    /// The least severe level returned: `error`, `warn`, `info` (default:
    /// every level the process logs).
    level: Option<String>,
}

/// `GET /logs`: the last lines this process logged, oldest first, as
/// `{"lines": [{"at_unix_ms", "level", "target", "text"}]}`.
async fn logs(query: Result<Query<LogsQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let level = match query.level.as_deref() {
        None => tracing::Level::TRACE,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_level",
                format!("level {text:?} is not one of error, warn, info, debug, trace"),
            )
        })?,
    };
    let limit = query.limit.unwrap_or(usize::MAX);
    let lines = holdfast_telemetry::recent_logs::recent_logs().last(limit, level);
    Ok(Json(json!({ "lines": lines })).into_response())
}

/// `/logs`: this process's last log lines.
pub fn logs_routes() -> Router {
    Router::new().route("/logs", get(logs))
}

/// The admin listener's router: health, `/metrics` and `/logs`.
pub fn admin_router(health: Health) -> Router {
    health_routes(health)
        .route("/metrics", get(metrics))
        .merge(logs_routes())
}
