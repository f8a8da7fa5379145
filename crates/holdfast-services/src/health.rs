//! Health endpoints and the admin router.
//!
//! `/health/live` answers while the process can serve at all; an
//! orchestrator restarts it when it does not. `/health/ready` answers 200
//! only when the dependencies this role needs answer (or a declared
//! degraded mode is active); load balancers route by it. `/health` is the
//! detailed JSON for people and the dashboard: Redis state, breaker,
//! transition history and the role's own figures.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use holdfast_redis::{ConnState, Redis};
use serde_json::json;

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

/// The admin listener's router: health plus `/metrics`.
pub fn admin_router(health: Health) -> Router {
    health_routes(health).route("/metrics", get(metrics))
}
