//! The ingress role: HTTP in, stream calls and jobs out.
//!
//! `POST /WeatherForecast/city` becomes a call on the weather topic and
//! waits for the reply until the request's deadline; `POST /jobs/weather`
//! queues a job and answers `202` at once with its id. How replies and
//! failures map to HTTP (the failures' side is decided in
//! [`crate::problem`]):
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
use holdfast_core::{Deadline, Durability, Keys, Reply, ReplyStatus, RequestId, Topic};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_streams::{CallOptions, Caller, CallerConfig};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::health::{Health, HealthCheck, health_routes, redis_not_ready};
use crate::http::{StackConfig, every_interface, located, stack};
use crate::problem::responses::{
    BadGateway, BadRequest, GatewayTimeout, NotFound, ServiceUnavailable, TooManyRequests,
    UnprocessableEntity,
};
use crate::problem::{ApiError, ApiJson, Problem, problem_response};
use crate::role::RoleListeners;
use crate::start::StartError;
use crate::weather::{Forecast, WeatherRequest, WeatherRequestBody};

/// Longest a job may wait for a worker.
const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Header with the caller's time budget in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-timeout-ms";

/// Settings of the ingress role.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    /// Public listener (default [`Self::DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// Admin listener for `/health*` and `/metrics` (default
    /// [`Self::DEFAULT_ADMIN_LISTEN`]); `None` serves none.
    pub admin_listen: Option<SocketAddr>,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Key layout.
    pub keys: Keys,
    /// Partitions per topic.
    pub partitions: u16,
    /// The topic weather requests go to (default [`Self::DEFAULT_TOPIC`]).
    pub topic: Topic,
    /// Deadline of a request that names none (default
    /// [`Self::DEFAULT_TIMEOUT`]).
    pub default_timeout: Duration,
    /// Largest deadline a request may ask for (default
    /// [`Self::DEFAULT_MAX_TIMEOUT`]).
    pub max_timeout: Duration,
    /// Per-topic backlog limit; beyond it requests get 429 (default
    /// [`Self::DEFAULT_BACKLOG_LIMIT`]).
    pub backlog_limit: Option<u64>,
    /// Middleware limits (body size, in-flight cap).
    pub stack: StackConfig,
    /// Durability of every request that does not ask for its own with
    /// the `Holdfast-Durability` header.
    pub durability: Durability,
    /// Refuse at once (`503 overloaded`) a request that would wait longer
    /// for a worker than its deadline allows (default on).
    pub admission: bool,
}

impl IngressSettings {
    /// Port of the public listener unless configured otherwise.
    pub const DEFAULT_PORT: u16 = 5009;
    /// Port of the admin listener unless configured otherwise.
    pub const DEFAULT_ADMIN_PORT: u16 = 5011;
    /// The public listener unless configured otherwise: every interface.
    pub const DEFAULT_LISTEN: SocketAddr = every_interface(Self::DEFAULT_PORT);
    /// The admin listener unless configured otherwise: every interface.
    pub const DEFAULT_ADMIN_LISTEN: SocketAddr = every_interface(Self::DEFAULT_ADMIN_PORT);
    /// The topic of weather requests: the weather demo's.
    pub const DEFAULT_TOPIC: &str = crate::weather::TOPIC;
    /// Deadline of a request that names none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Largest deadline a request may ask for.
    pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(60);
    /// Requests waiting in a topic (lag plus pending) beyond which new ones
    /// get 429.
    pub const DEFAULT_BACKLOG_LIMIT: u64 = 10_000;
    /// Largest request body, in bytes.
    pub const DEFAULT_BODY_LIMIT: usize = StackConfig::DEFAULT_BODY_LIMIT;

    /// Defaults for the given Redis.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            admin_listen: Some(Self::DEFAULT_ADMIN_LISTEN),
            redis,
            keys: Keys::default(),
            partitions: Topic::DEFAULT_PARTITIONS,
            topic: Topic::parse(Self::DEFAULT_TOPIC).expect("the default topic is valid"),
            default_timeout: Self::DEFAULT_TIMEOUT,
            max_timeout: Self::DEFAULT_MAX_TIMEOUT,
            backlog_limit: Some(Self::DEFAULT_BACKLOG_LIMIT),
            stack: Self::stack_for(Self::DEFAULT_MAX_TIMEOUT, Self::DEFAULT_BODY_LIMIT),
            durability: Durability::None,
            admission: true,
        }
    }

    /// Middleware limits for requests that may wait up to `max_timeout`:
    /// the listener's own limit must not cut a request short of the longest
    /// deadline it may ask for, so it is a second longer.
    pub fn stack_for(max_timeout: Duration, body_limit: usize) -> StackConfig {
        StackConfig {
            body_limit,
            timeout: max_timeout + Duration::from_secs(1),
            ..StackConfig::default()
        }
    }
}

/// How long the ingress waits at start for Redis, to check that it can
/// give the `fsync` durability it was configured with.
const FSYNC_CHECK_WAIT: Duration = Duration::from_secs(2);

/// What handlers share.
#[derive(Clone)]
pub struct IngressState {
    caller: Caller,
    redis: Redis,
    topic: Topic,
    default_timeout: Duration,
    max_timeout: Duration,
    durability: Durability,
    draining: Arc<AtomicBool>,
}

/// The ingress's health, as its public and admin listeners report it.
impl HealthCheck for IngressState {
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(redis) = redis_not_ready(&self.redis) {
            reasons.push(redis);
        } else if !self.caller.is_reading() {
            reasons.push("replies cannot be read".into());
        }
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".into());
        }
        reasons
    }

    fn detail(&self) -> serde_json::Value {
        json!({
            "role": "ingress",
            "redis": self.redis.health(),
            "calls_in_flight": self.caller.in_flight(),
            "reading_replies": self.caller.is_reading(),
            "topic": self.topic.as_str(),
            "backlog": self.caller.backlog(&self.topic),
            "draining": self.draining.load(Ordering::Relaxed),
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
    let health: Health = Arc::new(state.clone());
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(weather_city))
        .routes(routes!(enqueue_weather_job))
        .routes(routes!(job_status))
        .with_state(state)
        .split_for_parts();
    let app = api
        .merge(health_routes(health))
        .merge(crate::http::swagger_ui(openapi));
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
    opts.durability = match headers.get(DURABILITY_HEADER) {
        None => state.durability,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_durability",
                    format!(
                        "{DURABILITY_HEADER} must be none, fsync or replicas:N (N from 1 to {})",
                        holdfast_core::durability::MAX_REPLICAS
                    ),
                )
            })?,
    };
    Ok(opts)
}

/// The request header that asks for a durability, and the response header
/// that reports the one reached.
pub const DURABILITY_HEADER: &str = "holdfast-durability";

/// `response` with the durability its request reached.
fn with_durability(mut response: Response, reached: Durability) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(&reached.to_string()) {
        response.headers_mut().insert(DURABILITY_HEADER, value);
    }
    response
}

/// A reply that is not `ok`, as problem details that also name the
/// request, so a client can find it in the workers' logs.
#[derive(Serialize)]
struct ReplyProblem {
    #[serde(flatten)]
    problem: Problem,
    request_id: String,
}

fn reply_response(reply: Reply) -> Response {
    let (http, fallback) = match reply.status {
        ReplyStatus::Ok => {
            return (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                reply.body,
            )
                .into_response();
        }
        ReplyStatus::Error => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
        ReplyStatus::Expired => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        _ => (StatusCode::BAD_GATEWAY, "dead_letter"),
    };
    let body = ReplyProblem {
        problem: Problem::new(
            http.as_u16(),
            reply.code.as_deref().unwrap_or(fallback),
            http.canonical_reason().unwrap_or("Error"),
            reply.message.unwrap_or_default(),
        ),
        request_id: reply.id.to_string(),
    };
    problem_response(http, body)
}

/// What every weather request goes through before it is queued: refused
/// while this instance drains, parsed and encoded for the stream, and its
/// deadline, trace context and idempotency key read from the headers.
fn weather_call(
    state: &IngressState,
    headers: &HeaderMap,
    body: WeatherRequestBody,
) -> Result<(Bytes, CallOptions), ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::shutting_down());
    }
    let request = WeatherRequest::try_from(body)?;
    let payload = serde_json::to_vec(&request.to_body())
        .map(Bytes::from)
        .map_err(|_| ApiError::internal("could not encode the request"))?;
    Ok((payload, call_options(state, headers)?))
}

/// Forecast for a city, answered by a worker over the stream.
///
/// 400 for malformed JSON or a bad `x-timeout-ms` (`invalid_timeout`); 422
/// for an invalid request, or the handler's code when the worker refused
/// it; 429 `backlog_full`; 502 `dead_letter` when it was dead-lettered; 503
/// when Redis is unavailable (`redis_unavailable`) or this instance is
/// shutting down; 504 when the deadline passed.
#[utoipa::path(
    post,
    path = "/WeatherForecast/city",
    request_body = WeatherRequestBody,
    params(("x-timeout-ms" = Option<u64>, Header, description = "Deadline in milliseconds from now")),
    responses(
        (status = 200, description = "The forecast", body = Forecast),
        BadRequest,
        UnprocessableEntity,
        TooManyRequests,
        BadGateway,
        ServiceUnavailable,
        GatewayTimeout,
    )
)]
async fn weather_city(
    State(state): State<IngressState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WeatherRequestBody>,
) -> Result<Response, ApiError> {
    let (payload, opts) = weather_call(&state, &headers, body)?;
    let (reply, reached) = state
        .caller
        .call_reporting(&state.topic, payload, opts)
        .await?;
    Ok(with_durability(reply_response(reply), reached))
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
///
/// 422 for an invalid request; 429 `backlog_full`; 503 when Redis is
/// unavailable (`redis_unavailable`) or this instance is shutting down.
#[utoipa::path(
    post,
    path = "/jobs/weather",
    request_body = WeatherRequestBody,
    responses(
        (status = 202, description = "Queued", body = JobAccepted),
        UnprocessableEntity,
        TooManyRequests,
        ServiceUnavailable,
    )
)]
async fn enqueue_weather_job(
    State(state): State<IngressState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WeatherRequestBody>,
) -> Result<Response, ApiError> {
    let (payload, mut opts) = weather_call(&state, &headers, body)?;
    // A job may wait in the queue much longer than a call: up to an hour,
    // whether or not the client names a deadline.
    opts.deadline = Deadline::after(requested_timeout(
        &headers,
        MAX_JOB_TIMEOUT,
        MAX_JOB_TIMEOUT,
    )?);
    let (id, reached) = state
        .caller
        .enqueue_job_reporting(&state.topic, payload, opts)
        .await?;
    let status_url = format!("/jobs/weather/{id}");
    let accepted = JobAccepted {
        id: id.to_string(),
        status_url: status_url.clone(),
    };
    Ok(with_durability(
        located(StatusCode::ACCEPTED, &status_url, accepted),
        reached,
    ))
}

/// A job's status and, when done, its result.
///
/// 400 `invalid_id` when the id is not a job id; 404 when the job is
/// unknown or expired.
#[utoipa::path(
    get,
    path = "/jobs/weather/{id}",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Status and result"),
        BadRequest,
        NotFound,
    )
)]
async fn job_status(
    State(state): State<IngressState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // A UUID in any case: the wire and the keys use the lowercase form.
    let id: RequestId = id
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_id", "a job id is a hyphenated UUID"))?;
    let record = state
        .caller
        .job(&state.topic, &id)
        .await
        .map_err(ApiError::job_unreadable)?
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
        "durability": record.durability,
    }))
    .into_response())
}

/// A built ingress: listeners bound, Redis supervisor and caller started.
pub struct Ingress {
    /// Its tasks are the Redis supervisor and the caller's reader,
    /// keep-alive and backlog watch.
    listeners: RoleListeners,
    state: IngressState,
}

impl Ingress {
    /// Binds the listeners (port 0 picks a free one) and starts the caller.
    ///
    /// # Errors
    /// A listener cannot be bound, or the Redis settings are unusable.
    pub async fn build(settings: IngressSettings) -> Result<Self, StartError> {
        let mut listeners = RoleListeners::bind(
            settings.listen,
            settings.admin_listen,
            settings.stack.clone(),
        )
        .await?;
        let redis = Redis::start(settings.redis.clone(), listeners.tasks())?;
        listeners.announce("ingress", &redis, &settings.keys);
        let tasks = listeners.tasks();
        let mut caller_cfg = CallerConfig::new(settings.keys.clone());
        caller_cfg.partitions = settings.partitions;
        caller_cfg.backlog_limit = settings.backlog_limit;
        caller_cfg.admission = settings.admission;
        let caller = Caller::start(redis.clone(), caller_cfg, tasks);
        caller.watch_backlog(&settings.topic);
        if settings.durability == Durability::Fsync
            && redis.wait_ready(FSYNC_CHECK_WAIT).await
            && let Ok(holdfast_streams::FsyncSupport::No(why)) =
                holdfast_streams::fsync_support(&redis).await
        {
            // Refused now rather than on every request; a Redis that does
            // not answer at start is checked by the first request instead.
            return Err(StartError::Durability(why));
        }
        let state = IngressState {
            caller,
            redis,
            topic: settings.topic,
            default_timeout: settings.default_timeout,
            max_timeout: settings.max_timeout,
            durability: settings.durability,
            draining: listeners.draining(),
        };
        Ok(Self { listeners, state })
    }

    /// The public port.
    pub fn port(&self) -> u16 {
        self.listeners.port()
    }

    /// The admin port, if any.
    pub fn admin_port(&self) -> Option<u16> {
        self.listeners.admin_port()
    }

    /// The Redis handle (for health and tests).
    pub fn redis(&self) -> &Redis {
        &self.state.redis
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// requests in progress get their replies, and stops the caller.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = router(self.state.clone(), self.listeners.stack());
        let health: Health = Arc::new(self.state.clone());
        self.listeners.serve("ingress", app, health, shutdown).await
    }
}
