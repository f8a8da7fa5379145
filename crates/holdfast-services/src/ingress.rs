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

use crate::api::{location_header, text_schema, trimmed_text_pattern};
use crate::health::{Health, HealthCheck, health_routes, redis_not_ready};
use crate::http::{StackConfig, every_interface, located, loopback_only, stack};
use crate::problem::listener_doc::{parameter, required};
use crate::problem::responses::{
    BadRequest, GatewayTimeout, NotFound, ServiceUnavailable, TooManyRequests, UnprocessableEntity,
    UnsupportedMediaType,
};
use crate::problem::{ApiError, ApiJson, Problem, problem_response};
use crate::role::RoleListeners;
use crate::start::StartError;
use crate::weather::{DayForecast, Forecast, WeatherRequest, WeatherRequestBody};

/// Longest a job may wait for a worker.
const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Header with the caller's time budget in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-timeout-ms";

/// Header with the key that makes a request's effect happen once.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The longest city or location, in characters once trimmed, as
/// `WeatherRequest::try_from` takes them.
const MAX_WEATHER_FIELD_CHARS: usize = 100;

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
    /// With admission, the longest a call may wait for a worker whatever
    /// its deadline (default 500 ms); `None` holds calls to their deadline
    /// alone. Jobs are always held to their deadline alone.
    pub max_queue_wait: Option<Duration>,
}

impl IngressSettings {
    /// Port of the public listener unless configured otherwise.
    pub const DEFAULT_PORT: u16 = 5009;
    /// Port of the admin listener unless configured otherwise.
    pub const DEFAULT_ADMIN_PORT: u16 = 5011;
    /// The public listener unless configured otherwise: every interface.
    pub const DEFAULT_LISTEN: SocketAddr = every_interface(Self::DEFAULT_PORT);
    /// The admin listener unless configured otherwise: loopback only, so
    /// metrics, logs and health details are not offered to the network
    /// unless asked for (`0.0.0.0:PORT` where a kubelet or Prometheus
    /// must reach them).
    pub const DEFAULT_ADMIN_LISTEN: SocketAddr = loopback_only(Self::DEFAULT_ADMIN_PORT);
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
            max_queue_wait: Some(CallerConfig::DEFAULT_MAX_QUEUE_WAIT),
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
    components(schemas(
        Problem,
        ReplyProblem,
        WeatherRequestSchema,
        Forecast,
        DayForecast,
        JobAccepted,
        JobStatus,
        JobState
    ))
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
    let openapi = crate::problem::listener_doc::public(openapi, stack_cfg);
    let app = api
        .merge(health_routes(health))
        .merge(crate::http::swagger_ui(openapi));
    stack(app, stack_cfg)
}

/// The deadline a request asks for with `x-timeout-ms`, capped at `max`;
/// `default` when it names none. Any positive integer of milliseconds is
/// taken (one past `u64` is capped like any other too large).
fn requested_timeout(
    headers: &HeaderMap,
    default: Duration,
    max: Duration,
) -> Result<Duration, ApiError> {
    let Some(raw) = headers.get(TIMEOUT_HEADER) else {
        return Ok(default.min(max));
    };
    let ms = raw.to_str().ok().and_then(positive_millis).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_timeout",
            format!("`{TIMEOUT_HEADER}` must be a positive integer of milliseconds"),
        )
    })?;
    Ok(Duration::from_millis(ms).min(max))
}

/// A positive decimal integer (a `+` and leading zeros allowed), saturated
/// at `u64::MAX`; `None` for anything else.
fn positive_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return None;
    }
    Some(significant.parse().unwrap_or(u64::MAX))
}

/// The idempotency key a request carries, if any: 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters (spaces and tabs
/// inside), else 400 `invalid_idempotency_key`. A key that cannot be
/// honoured is refused rather than ignored: its sender counts on it.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len()))
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!(
                    "`{IDEMPOTENCY_KEY_HEADER}` must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                ),
            )
        })
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
    opts.idempotency_key = idempotency_key(headers)?;
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

/// The headers a weather call or job may carry, as documented (read by
/// [`call_options`] and [`requested_timeout`]).
struct CallHeaders;

impl utoipa::IntoParams for CallHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::ParameterIn::Header;
        vec![
            // A header is text: the integer as `positive_millis` reads it.
            parameter(
                TIMEOUT_HEADER,
                Header,
                false,
                "The request's deadline in milliseconds from now, any positive integer, capped at the ingress's largest (60 s unless configured; a job's at an hour); without it, 10 s for a call and an hour for a job. 400 `invalid_timeout` otherwise",
                text_schema(false, r"^\+?0*[1-9][0-9]*$", "A positive integer"),
            ),
            // Visible ASCII, with spaces and tabs only inside: HTTP drops
            // them around a header's value.
            parameter(
                IDEMPOTENCY_KEY_HEADER,
                Header,
                false,
                "Makes the request's effect happen once however often it is sent (and delivered): 1 to 256 visible ASCII characters, else 400 `invalid_idempotency_key`",
                text_schema(
                    false,
                    r"^[!-~](?:[\t -~]{0,254}[!-~])?$",
                    "1 to 256 visible ASCII characters",
                ),
            ),
            // As `Durability`'s parse reads it: N is a `u32` from 1 to 16,
            // so a `+` and leading zeros are taken too.
            parameter(
                "Holdfast-Durability",
                Header,
                false,
                "How durable the request must be before it counts as queued: `none`, `fsync` (the append-only file on disk) or `replicas:N` (N from 1 to 16); the ingress's own setting when absent. 400 `invalid_durability` for another value; 422 `durability_unavailable` when this Redis cannot give it (`fsync` without the append-only file, or before Redis 7.2 without `appendfsync always`)",
                text_schema(
                    false,
                    r"^(?:none|fsync|replicas:\+?0*(?:[1-9]|1[0-6]))$",
                    "`none`, `fsync` or `replicas:N`, N from 1 to 16",
                ),
            ),
        ]
    }
}

/// `Holdfast-Durability` on an answer: the durability the request reached
/// (lower than asked when replicas or the disk did not confirm in time).
fn durability_answer_header() -> utoipa::openapi::header::Header {
    required(
        utoipa::openapi::header::HeaderBuilder::new()
            .schema(Some(text_schema(
                false,
                r"^(?:none|fsync|replicas:(?:[1-9]|1[0-6]))$",
                "`none`, `fsync` or `replicas:N`",
            )))
            .description(Some(
                "The durability the request reached: lower than asked when the replicas or the disk did not confirm in time",
            ))
            .build(),
    )
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
#[derive(Serialize, ToSchema)]
struct ReplyProblem {
    #[serde(flatten)]
    problem: Problem,
    /// The request's id, as the workers log it: present when a worker
    /// answered (or the request was dead-lettered).
    #[schema(format = Uuid, required = false)]
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
/// 400 for malformed JSON or a bad `x-timeout-ms` (`invalid_timeout`),
/// `idempotency-key` (`invalid_idempotency_key`) or `Holdfast-Durability`
/// (`invalid_durability`); 415 for a body not declared as JSON; 422 for an
/// invalid request, `durability_unavailable`, or the handler's code when
/// the worker refused it (then with `request_id`); 429 `backlog_full`; 502
/// `dead_letter` when it was dead-lettered; 503 when Redis is unavailable
/// (`redis_unavailable`), the request would wait longer for a worker than
/// its deadline allows (`overloaded`) or this instance is shutting down;
/// 504 `deadline_exceeded` when the deadline passed.
#[utoipa::path(
    post,
    path = "/WeatherForecast/city",
    tag = "weather",
    request_body = WeatherRequestSchema,
    params(CallHeaders),
    responses(
        ForecastAnswer,
        BadRequest,
        UnsupportedMediaType,
        (status = 422, description = "An invalid request (`invalid_body`), a durability this Redis cannot give (`durability_unavailable`), or refused by the worker's handler (its own code, with `request_id`)", content(
            (ReplyProblem = "application/problem+json"),
        ), headers(
            ("Holdfast-Durability" = String, description = "When a worker answered: the durability the request reached"),
        )),
        TooManyRequests,
        (status = 502, description = "Dead-lettered (`dead_letter`, with `request_id`)", content(
            (ReplyProblem = "application/problem+json"),
        ), headers(
            ("Holdfast-Durability" = String, description = "The durability the request reached"),
        )),
        ServiceUnavailable,
        (status = 504, description = "No reply before the deadline (`deadline_exceeded`, with `request_id` when the worker said so)", content(
            (ReplyProblem = "application/problem+json"),
        ), headers(
            ("Holdfast-Durability" = String, description = "When a worker said so: the durability the request reached"),
        )),
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
    #[schema(format = Uuid)]
    id: String,
    /// Where to ask for its status (also in `Location`).
    status_url: String,
}

/// Queues a forecast job; answers at once.
///
/// 400 for malformed JSON or a bad header (as for a call); 415 for a body
/// not declared as JSON; 422 for an invalid request or
/// `durability_unavailable`; 429 `backlog_full`; 503 when Redis is
/// unavailable (`redis_unavailable`) or this instance is shutting down;
/// 504 `deadline_exceeded` when it could not be queued before its deadline.
#[utoipa::path(
    post,
    path = "/jobs/weather",
    tag = "jobs",
    request_body = WeatherRequestSchema,
    params(CallHeaders),
    responses(
        JobQueued,
        BadRequest,
        UnsupportedMediaType,
        UnprocessableEntity,
        TooManyRequests,
        ServiceUnavailable,
        GatewayTimeout,
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

/// What a job is doing.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // The document's view of the record's `status`.
enum JobState {
    /// Waiting for a worker, or being handled.
    Queued,
    /// Handled: `result` holds the answer.
    Done,
    /// Refused by the handler: `code` and `message` say why.
    Failed,
    /// Its deadline passed before a worker handled it.
    Expired,
    /// Dead-lettered after failing too often.
    Dead,
}

/// A job's status, as `GET /jobs/weather/{id}` answers it.
#[derive(Serialize, ToSchema)]
struct JobStatus {
    /// Job id.
    #[schema(format = Uuid)]
    id: String,
    /// What the job is doing.
    #[schema(value_type = JobState)]
    status: String,
    /// The worker's answer (the forecast) once `done`.
    result: Option<serde_json::Value>,
    /// Why it failed, expired or died.
    code: Option<String>,
    /// The same for people.
    message: Option<String>,
    /// The worker that finished it.
    worker: Option<String>,
    /// The durability reached when it was queued, when one was asked for.
    durability: Option<String>,
}

/// A job's status and, when done, its result.
///
/// 400 `invalid_id` when the id is not a hyphenated UUID; 404 when the job
/// is unknown or expired; 503 when Redis is unavailable.
#[utoipa::path(
    get,
    path = "/jobs/weather/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: a hyphenated UUID, in either case", pattern = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")),
    responses(
        (status = 200, description = "Status and, when done, result", body = JobStatus),
        BadRequest,
        NotFound,
        ServiceUnavailable,
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
    Ok(Json(JobStatus {
        id: id.to_string(),
        status: record.status,
        result,
        code: record.code,
        message: record.message,
        worker: record.worker,
        durability: record.durability,
    })
    .into_response())
}

/// The body of a weather call or job, as documented: what
/// `WeatherRequestBody` takes and `WeatherRequest::try_from` accepts.
#[derive(ToSchema)]
#[schema(as = WeatherRequestBody)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The document's view of `WeatherRequestBody`.
struct WeatherRequestSchema {
    /// City name: 1 to 100 characters once trimmed, no control characters.
    #[schema(schema_with = city_schema, example = "New York")]
    city: String,
    /// Part of the city: up to 100 characters once trimmed, no control
    /// characters; blank is the same as absent.
    #[schema(schema_with = location_schema, required = false, example = "Downtown")]
    location: Option<String>,
}

fn city_schema() -> utoipa::openapi::schema::Object {
    text_schema(
        false,
        &trimmed_text_pattern(1, MAX_WEATHER_FIELD_CHARS),
        "1 to 100 characters once trimmed, no control characters",
    )
}

fn location_schema() -> utoipa::openapi::schema::Object {
    text_schema(
        true,
        &trimmed_text_pattern(0, MAX_WEATHER_FIELD_CHARS),
        "Up to 100 characters once trimmed, no control characters",
    )
}

/// The document's 200 of a call: the worker's forecast, with the
/// durability the request reached.
struct ForecastAnswer;

impl utoipa::IntoResponses for ForecastAnswer {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        let ok = utoipa::openapi::response::ResponseBuilder::new()
            .description("The forecast")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Forecast")))
                    .build(),
            )
            .header("Holdfast-Durability", durability_answer_header())
            .build();
        std::collections::BTreeMap::from([("200".to_owned(), ok.into())])
    }
}

/// The document's 202 of a job: its id and where to ask for its status
/// (`Location`), with the durability it reached.
struct JobQueued;

impl utoipa::IntoResponses for JobQueued {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        let queued = utoipa::openapi::response::ResponseBuilder::new()
            .description("Queued; `Location` names its status")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("JobAccepted")))
                    .build(),
            )
            .header("Location", location_header())
            .header("Holdfast-Durability", durability_answer_header())
            .build();
        std::collections::BTreeMap::from([("202".to_owned(), queued.into())])
    }
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
        caller_cfg.max_queue_wait = settings.max_queue_wait;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_any_positive_integer_of_milliseconds_capped_at_the_maximum() {
        assert_eq!(positive_millis("250"), Some(250));
        assert_eq!(positive_millis("+007"), Some(7));
        assert_eq!(positive_millis("99999999999999999999999"), Some(u64::MAX));
        for refused in ["", "0", "+", "000", "-5", "1.5", "1e3", "ten", "+-1"] {
            assert_eq!(positive_millis(refused), None, "{refused:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            TIMEOUT_HEADER,
            HeaderValue::from_static("99999999999999999999999"),
        );
        let max = Duration::from_secs(60);
        assert_eq!(
            requested_timeout(&headers, Duration::from_secs(10), max).unwrap(),
            max
        );
    }

    #[test]
    fn an_idempotency_key_that_cannot_be_honoured_is_refused() {
        let key = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                IDEMPOTENCY_KEY_HEADER,
                HeaderValue::from_bytes(value).unwrap(),
            );
            idempotency_key(&headers)
        };
        assert_eq!(key(b"order-7").unwrap().as_deref(), Some("order-7"));
        assert_eq!(key(&[b'k'; 256]).unwrap().map(|k| k.len()), Some(256));
        for refused in [&b""[..], &[b'k'; 257][..], "clé".as_bytes()] {
            assert_eq!(
                key(refused).unwrap_err().code(),
                "invalid_idempotency_key",
                "{refused:?}"
            );
        }
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }
}
