//! The ingress role: HTTP in, stream calls and jobs out.
//!
//! `POST /WeatherForecast/city` becomes a call on the weather topic and
//! waits for the reply until the request's deadline; `POST /jobs/weather`
//! queues a job and answers `202` at once with its id. How replies map to
//! HTTP:
//!
//! | outcome | status |
//! | --- | --- |
//! | reply `ok` | 200 with the worker's body |
//! | reply `error` (handler refused) | 422 problem, the handler's code |
//! | reply `expired`, or no reply by the deadline | 504 problem |
//! | reply `dead` (dead-lettered) | 502 problem |
//! | backlog over its limit | 429 problem with `Retry-After` |
//! | Redis unavailable or breaker open | 503 problem with `Retry-After` |
//! | shutting down | 503 problem |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use holdfast_core::{Deadline, Keys, Reply, ReplyStatus, RequestId, Topic};
use holdfast_redis::{ConnState, Redis, RedisConfig};
use holdfast_streams::{CallError, CallOptions, Caller, CallerConfig};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::health::{HealthCheck, admin_router, health_routes};
use crate::http::{StackConfig, serve_role, stack};
use crate::problem::{ApiError, ApiJson, Problem};
use crate::weather::{Forecast, WeatherRequest, WeatherRequestBody};

/// Longest a job may wait for a worker.
const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Header with the caller's time budget in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-timeout-ms";

/// Settings of the ingress role.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    /// Public listener (default `0.0.0.0:5009`).
    pub listen: SocketAddr,
    /// Admin listener for `/health*` and `/metrics`; `None` serves none.
    pub admin_listen: Option<SocketAddr>,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Key layout.
    pub keys: Keys,
    /// Partitions per topic.
    pub partitions: u16,
    /// The topic weather requests go to.
    pub topic: Topic,
    /// Deadline of a request that names none.
    pub default_timeout: Duration,
    /// Largest deadline a request may ask for.
    pub max_timeout: Duration,
    /// Per-topic backlog limit; beyond it requests get 429.
    pub backlog_limit: Option<u64>,
    /// Middleware limits (body size, in-flight cap).
    pub stack: StackConfig,
}

impl IngressSettings {
    /// Defaults for the given Redis.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5009)),
            admin_listen: Some(SocketAddr::from(([0, 0, 0, 0], 5011))),
            redis,
            keys: Keys::default(),
            partitions: 1,
            topic: Topic::parse("weather").expect("valid topic"),
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(60),
            backlog_limit: Some(10_000),
            // The listener's own limit must not cut a request short of the
            // longest deadline it may ask for.
            stack: StackConfig {
                timeout: Duration::from_secs(61),
                ..StackConfig::default()
            },
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct IngressState {
    caller: Caller,
    redis: Redis,
    topic: Topic,
    default_timeout: Duration,
    max_timeout: Duration,
    draining: Arc<AtomicBool>,
}

struct IngressHealth {
    state: IngressState,
}

impl HealthCheck for IngressHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let state = self.state.redis.state();
        if state != ConnState::Ready {
            reasons.push(format!("redis is {}", state.as_str()));
        } else if !self.state.caller.is_reading() {
            reasons.push("replies cannot be read".into());
        }
        if self.state.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".into());
        }
        reasons
    }

    fn detail(&self) -> serde_json::Value {
        json!({
            "role": "ingress",
            "redis": self.state.redis.health(),
            "calls_in_flight": self.state.caller.in_flight(),
            "reading_replies": self.state.caller.is_reading(),
            "topic": self.state.topic.as_str(),
            "backlog": self.state.caller.backlog(&self.state.topic),
            "draining": self.state.draining.load(Ordering::Relaxed),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "holdfast ingress",
        description = "HTTP front door whose requests are carried over Redis Streams to workers."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The public router: API, health, OpenAPI and Swagger UI, inside the stack.
pub fn router(state: IngressState, stack_cfg: &StackConfig) -> Router {
    let health: Arc<dyn HealthCheck> = Arc::new(IngressHealth {
        state: state.clone(),
    });
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(weather_city))
        .routes(routes!(enqueue_weather_job))
        .routes(routes!(job_status))
        .with_state(state)
        .split_for_parts();
    let app = api
        .merge(health_routes(health))
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", openapi));
    stack(app, stack_cfg)
}

/// The deadline a request asks for with `x-timeout-ms`, capped at `max`;
/// `default` when it names none.
fn requested_timeout(
    headers: &HeaderMap,
    default: Duration,
    max: Duration,
) -> Result<Duration, ApiError> {
    let Some(raw) = headers.get(TIMEOUT_HEADER) else {
        return Ok(default.min(max));
    };
    let ms: u64 = raw
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_timeout",
                format!("`{TIMEOUT_HEADER}` must be a positive integer of milliseconds"),
            )
        })?;
    Ok(Duration::from_millis(ms).min(max))
}

fn call_options(state: &IngressState, headers: &HeaderMap) -> Result<CallOptions, ApiError> {
    let mut opts = CallOptions::json(requested_timeout(
        headers,
        state.default_timeout,
        state.max_timeout,
    )?);
    opts.traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned);
    opts.idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_owned);
    Ok(opts)
}

fn refuse_if_draining(state: &IngressState) -> Result<(), ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable(
            "shutting_down",
            "this instance is shutting down",
            Duration::from_secs(1),
        ));
    }
    Ok(())
}

fn call_error(err: CallError) -> ApiError {
    match err {
        CallError::Backlog { backlog, limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "backlog_full",
            format!("the topic has {backlog} requests waiting (limit {limit}); try again later"),
        )
        .retry_after(Duration::from_secs(1)),
        CallError::Redis(e) => {
            tracing::warn!(error = %e, "call failed: redis");
            ApiError::unavailable(
                "redis_unavailable",
                "the request could not be queued because Redis is unavailable",
                e.retry_after().unwrap_or(Duration::from_secs(1)),
            )
        }
        CallError::DeadlineExceeded => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "no reply before the deadline",
        ),
        CallError::ShuttingDown => ApiError::unavailable(
            "shutting_down",
            "this instance is shutting down",
            Duration::from_secs(1),
        ),
    }
}

fn reply_response(reply: Reply) -> Response {
    let code =
        |r: &Reply, default: &'static str| r.code.clone().unwrap_or_else(|| default.to_owned());
    match reply.status {
        ReplyStatus::Ok => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            reply.body,
        )
            .into_response(),
        status => {
            let (http, fallback) = match status {
                ReplyStatus::Error => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
                ReplyStatus::Expired => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
                _ => (StatusCode::BAD_GATEWAY, "dead_letter"),
            };
            let body = json!({
                "type": format!("https://holdfast.invalid/problems/{}", code(&reply, fallback)),
                "title": http.canonical_reason().unwrap_or("Error"),
                "status": http.as_u16(),
                "detail": reply.message.clone().unwrap_or_default(),
                "code": code(&reply, fallback),
                "request_id": reply.id.to_string(),
            });
            let mut response = (http, Json(body)).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::problem::PROBLEM_JSON),
            );
            response
        }
    }
}

/// Parses a weather request and encodes it for the stream.
fn weather_payload(body: WeatherRequestBody) -> Result<Bytes, ApiError> {
    let req = WeatherRequest::try_from(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        )
    })?;
    serde_json::to_vec(&req.to_body())
        .map(Bytes::from)
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not encode the request",
            )
        })
}

/// Forecast for a city, answered by a worker over the stream.
#[utoipa::path(
    post,
    path = "/WeatherForecast/city",
    request_body = WeatherRequestBody,
    params(("x-timeout-ms" = Option<u64>, Header, description = "Deadline in milliseconds from now")),
    responses(
        (status = 200, description = "The forecast", body = Forecast),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Backlog full", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Dead-lettered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Deadline passed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn weather_city(
    State(state): State<IngressState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WeatherRequestBody>,
) -> Result<Response, ApiError> {
    refuse_if_draining(&state)?;
    let payload = weather_payload(body)?;
    let opts = call_options(&state, &headers)?;
    let reply = state
        .caller
        .call(&state.topic, payload, opts)
        .await
        .map_err(call_error)?;
    Ok(reply_response(reply))
}

/// A queued job.
#[derive(Serialize, ToSchema)]
struct JobAccepted {
    /// Job id.
    id: String,
    /// Where to ask for its status.
    status_url: String,
}

/// Queues a forecast job; answers at once.
#[utoipa::path(
    post,
    path = "/jobs/weather",
    request_body = WeatherRequestBody,
    responses(
        (status = 202, description = "Queued", body = JobAccepted),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Backlog full", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn enqueue_weather_job(
    State(state): State<IngressState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WeatherRequestBody>,
) -> Result<Response, ApiError> {
    refuse_if_draining(&state)?;
    let payload = weather_payload(body)?;
    let mut opts = call_options(&state, &headers)?;
    // A job may wait in the queue much longer than a call: up to an hour,
    // whether or not the client names a deadline.
    opts.deadline = Deadline::after(requested_timeout(
        &headers,
        MAX_JOB_TIMEOUT,
        MAX_JOB_TIMEOUT,
    )?);
    let id = state
        .caller
        .enqueue_job(&state.topic, payload, opts)
        .await
        .map_err(call_error)?;
    let status_url = format!("/jobs/weather/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            id: id.to_string(),
            status_url: status_url.clone(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A job's status and, when done, its result.
#[utoipa::path(
    get,
    path = "/jobs/weather/{id}",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Status and result"),
        (status = 400, description = "Not a job id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or expired", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn job_status(
    State(state): State<IngressState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: RequestId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_id", "a job id is a UUID"))?;
    let record = state
        .caller
        .job(&state.topic, &id)
        .await
        .map_err(|e| match e {
            CallError::Redis(e) => ApiError::unavailable(
                "redis_unavailable",
                "the job's status cannot be read because Redis is unavailable",
                e.retry_after().unwrap_or(Duration::from_secs(1)),
            ),
            other => call_error(other),
        })?
        .ok_or_else(|| ApiError::not_found("no such job (unknown or expired)"))?;
    let result = record.result.as_ref().map(|r| {
        serde_json::from_slice::<serde_json::Value>(r)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(r)))
    });
    Ok(Json(json!({
        "id": id.to_string(),
        "status": record.status,
        "result": result,
        "code": record.code,
        "message": record.message,
        "worker": record.worker,
    }))
    .into_response())
}

/// A built ingress: listeners bound, Redis supervisor and caller started.
pub struct Ingress {
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: IngressState,
    stack: StackConfig,
    background: CancellationToken,
}

impl Ingress {
    /// Binds the listeners (port 0 picks a free one) and starts the caller.
    pub async fn build(settings: IngressSettings) -> std::io::Result<Self> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let listener = TcpListener::bind(settings.listen).await?;
        let admin = match settings.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let background = CancellationToken::new();
        let redis = Redis::start(settings.redis.clone(), background.clone())
            .map_err(std::io::Error::other)?;
        let mut caller_cfg = CallerConfig::new(settings.keys.clone());
        caller_cfg.partitions = settings.partitions;
        caller_cfg.backlog_limit = settings.backlog_limit;
        let caller = Caller::start(redis.clone(), caller_cfg, background.clone());
        caller.watch_backlog(&settings.topic);
        let state = IngressState {
            caller,
            redis,
            topic: settings.topic,
            default_timeout: settings.default_timeout,
            max_timeout: settings.max_timeout,
            draining: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self {
            listener,
            admin,
            state,
            stack: settings.stack,
            background,
        })
    }

    /// The public port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The admin port, if any.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The Redis handle (for health and tests).
    pub fn redis(&self) -> &Redis {
        &self.state.redis
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// requests in progress get their replies, and stops the caller.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let health: Arc<dyn HealthCheck> = Arc::new(IngressHealth {
            state: self.state.clone(),
        });
        let app = router(self.state.clone(), &self.stack);
        let admin = self.admin.map(|listener| (listener, admin_router(health)));
        let draining = self.state.draining.clone();
        serve_role(
            "ingress",
            self.listener,
            app,
            admin,
            draining,
            shutdown,
            self.background,
        )
        .await
    }
}
