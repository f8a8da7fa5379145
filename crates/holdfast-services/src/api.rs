//! The api role: users and products from the SQL store, read through the
//! cache.
//!
//! Reads of one user, one product and a page of products go through a
//! [`ReadThrough`] per entity (Redis L2, no L1 by default), so they are
//! never slower or less available than the database alone: with Redis down
//! or switched off they go straight to the database (`X-Cache: BYPASS`).
//! User search reads the database directly (every query is different, a
//! cache would only fill). Writes go to the store and then invalidate the
//! user's cache key, so the next read sees the change.
//!
//! Every read answered through the cache is wrapped as
//! `{"source": "cache" | "db" | "stale", "data": …}` and carries
//! `X-Cache: HIT | MISS | STALE | BYPASS`.
//!
//! How failures map to HTTP:
//!
//! | failure | status |
//! | --- | --- |
//! | bad id, query or JSON | 400 / 422 problem |
//! | no such user or product | 404 problem |
//! | duplicate email, user with orders | 409 problem |
//! | database unavailable or timed out (no stale copy) | 503 problem with `Retry-After` |
//! | anything else from the database | 500 problem (details only in logs) |
//! | order for an unknown user or product | 422 `unknown_user` / `unknown_product` |
//! | users endpoint down, slow or circuit open | 503 `users_unavailable` with `Retry-After` |
//!
//! Orders (`POST /api/orders`, `GET /api/orders/{id}`) read and write the
//! store directly. Placing one first asks the users endpoint over HTTP
//! (`GET {users_base_url}/api/users/{id}`, by default this api itself),
//! through a client with a per-attempt timeout, jittered retries under a
//! retry budget, an overall deadline and a circuit breaker, so a dead users
//! side gives a quick 503, never a hang.
//!
//! The store API of the metrics demo (`/api/store/*`) keeps a few figures
//! in memory (customers waiting, looking around, served, in the store) and
//! mirrors them in counters and gauges on `/metrics`; it does not touch the
//! database or the cache.
//!
//! Readiness follows the database (pinged in the background); Redis being
//! down is a declared degraded mode, visible in `/health`, not a reason to
//! take the instance out of rotation.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use holdfast_cache::{CacheError, Cached, LoadError, ReadThrough};
use holdfast_core::metric_names;
use holdfast_redis::{Redis, RedisConfig};
use holdfast_resilience::{
    Backoff, BreakerConfig, BreakerOpen, CircuitBreaker, RetryBudget, within,
};
use holdfast_store::{Entity, NewOrder, NewUser, Order, Product, Store, StoreError, UpdateUser};
use serde::{Deserialize, Serialize};
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
use crate::warm_up::{WarmUp, WarmUpTask};

pub use holdfast_cache::CacheConfig;
pub use holdfast_store::{DatabaseUrl, StoreOptions};

/// The response header saying where a read was answered from.
pub const X_CACHE: &str = "x-cache";

/// Longest user search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;

/// Largest page of search results or products.
pub const MAX_LIMIT: u32 = 100;

/// Page size when a request names none.
pub const DEFAULT_LIMIT: u32 = 20;

/// Largest offset into the product list; beyond the seed data by far, and
/// small enough that a page key stays short.
pub const MAX_OFFSET: u32 = 1_000_000;

/// Products warmed into the cache at start unless configured otherwise.
pub const DEFAULT_WARM_PRODUCTS: u32 = 100;

/// How often the database is pinged for readiness.
const DB_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the api role.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Public listener (default `0.0.0.0:5020`); also serves `/health*`.
    pub listen: SocketAddr,
    /// Admin listener for `/health*` and `/metrics` (default
    /// `0.0.0.0:5021`); `None` serves none.
    pub admin_listen: Option<SocketAddr>,
    /// Redis connection; `enabled: false` runs with no Redis at all.
    pub redis: RedisConfig,
    /// The source of truth (default: the SQLite file `./data/holdfast.db`,
    /// its directory created when missing).
    pub database_url: DatabaseUrl,
    /// Pool limits and timeouts of the store.
    pub store_options: StoreOptions,
    /// Artificial delay before every product read from the database, so a
    /// demo shows the database next to the cache (default 0).
    pub products_db_delay: Duration,
    /// Cache settings, shared by the users and products caches (default
    /// TTL 360 s, no L1).
    pub cache: CacheConfig,
    /// Products (the first ids) and the first page of the product list
    /// loaded into the cache at start, in the background (default 100;
    /// 0 switches the warm-up off).
    pub warm_products: u32,
    /// Users seeded into an empty table at start.
    pub seed_users: u32,
    /// Products seeded into an empty table at start.
    pub seed_products: u32,
    /// Middleware limits (body size, in-flight cap, timeout).
    pub stack: StackConfig,
    /// Where the order service finds the users endpoint
    /// (`{base}/api/users/{id}`); `None` calls this api's own public
    /// listener over loopback.
    pub users_base_url: Option<String>,
    /// How the order service calls the users endpoint.
    pub users_client: UsersClientConfig,
}

impl ApiSettings {
    /// Defaults for the given Redis.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5020)),
            admin_listen: Some(SocketAddr::from(([0, 0, 0, 0], 5021))),
            redis,
            database_url: DatabaseUrl::sqlite_file(FsPath::new("./data/holdfast.db")),
            store_options: StoreOptions::default(),
            products_db_delay: Duration::ZERO,
            cache: CacheConfig::default(),
            warm_products: DEFAULT_WARM_PRODUCTS,
            seed_users: holdfast_store::seed::DEFAULT_USERS,
            seed_products: holdfast_store::seed::DEFAULT_PRODUCTS,
            stack: StackConfig::default(),
            users_base_url: None,
            users_client: UsersClientConfig::default(),
        }
    }
}

/// Limits of the order service's calls to the users endpoint.
#[derive(Clone, Debug)]
pub struct UsersClientConfig {
    /// Longest wait for one attempt (default 1 s).
    pub attempt_timeout: Duration,
    /// Longest wait for a whole lookup, retries included (default 3 s).
    pub deadline: Duration,
    /// Most attempts per lookup (default 4).
    pub max_attempts: u32,
    /// Jittered delay between attempts (default 50 ms doubling to 500 ms).
    pub backoff: Backoff,
    /// The breaker in front of the users endpoint (default config).
    pub breaker: BreakerConfig,
}

impl Default for UsersClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(3),
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Why a users lookup gave no answer.
#[derive(Clone, Copy, Debug)]
enum UsersFailure {
    /// Connect error, timeout or 5xx: worth another attempt.
    Transient(&'static str),
    /// The breaker refused the call.
    Open(BreakerOpen),
    /// An answer that is neither a user nor "not found".
    Unexpected(u16),
}

/// The order service's HTTP client for the users endpoint: a per-attempt
/// timeout, retries with jittered backoff under a shared retry budget, an
/// overall deadline, and a circuit breaker so that with the users side down
/// lookups fail fast.
struct UsersClient {
    http: reqwest::Client,
    base: String,
    cfg: UsersClientConfig,
    budget: RetryBudget,
    breaker: CircuitBreaker,
}

impl UsersClient {
    fn new(base: String, cfg: UsersClientConfig) -> std::io::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.attempt_timeout)
            .timeout(cfg.attempt_timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            breaker: CircuitBreaker::new("users", cfg.breaker),
            budget: RetryBudget::default(),
            cfg,
        })
    }

    /// Whether user `id` exists, asked over HTTP.
    async fn user_exists(&self, id: i64) -> Result<bool, UsersFailure> {
        let deadline = tokio::time::Instant::now() + self.cfg.deadline;
        holdfast_resilience::retry(
            self.cfg.backoff,
            self.cfg.max_attempts,
            Some(&self.budget),
            deadline,
            |failure| matches!(failure, UsersFailure::Transient(_)),
            |_| self.attempt(id, deadline),
        )
        .await
    }

    async fn attempt(&self, id: i64, deadline: tokio::time::Instant) -> Result<bool, UsersFailure> {
        let permit = self.breaker.try_acquire().map_err(UsersFailure::Open)?;
        let url = format!("{}/api/users/{id}", self.base);
        let sent = within(deadline, self.http.get(url).send()).await;
        let outcome = match sent {
            Err(_) => Err(UsersFailure::Transient("users_timeout")),
            Ok(Err(err)) if err.is_timeout() => Err(UsersFailure::Transient("users_timeout")),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "users call failed");
                Err(UsersFailure::Transient("users_unreachable"))
            }
            Ok(Ok(resp)) => match resp.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                status if status >= 500 => Err(UsersFailure::Transient("users_error")),
                status => Err(UsersFailure::Unexpected(status)),
            },
        };
        match outcome {
            Err(UsersFailure::Transient(_)) => permit.failure(),
            _ => permit.success(),
        }
        outcome
    }
}

/// The HTTP form of a failed users lookup.
fn users_error(failure: UsersFailure) -> ApiError {
    match failure {
        UsersFailure::Open(open) => ApiError::unavailable(
            "users_unavailable",
            "the users service is unavailable (circuit open)",
            open.retry_after,
        ),
        UsersFailure::Transient(reason) => {
            tracing::warn!(reason, "users service unavailable");
            ApiError::unavailable(
                "users_unavailable",
                "the users service did not answer in time",
                Duration::from_secs(1),
            )
        }
        UsersFailure::Unexpected(status) => {
            tracing::warn!(status, "users service answered unexpectedly");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "users_bad_response",
                "the users service gave an unexpected answer",
            )
        }
    }
}

/// What the background ping last learnt about the database.
#[derive(Clone, Debug, Default)]
struct DbStatus {
    up: bool,
    /// Stable code of the last failure (`db_unavailable`, …), never its text.
    last_error: Option<&'static str>,
}

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Store,
    redis: Redis,
    users: ReadThrough,
    products: ReadThrough,
    /// Written by the ping task only; read by health checks. A std mutex:
    /// held for a copy, never across an await.
    db: Arc<Mutex<DbStatus>>,
    draining: Arc<AtomicBool>,
    /// The store demo's figures.
    shop: Arc<StoreFigures>,
    /// The order service's client for the users endpoint.
    users_client: Arc<UsersClient>,
    /// How the cache warm-up went.
    warm_up: Arc<Mutex<WarmUp>>,
}

impl ApiState {
    fn db_status(&self) -> DbStatus {
        self.db.lock().expect("db status lock poisoned").clone()
    }
}

struct ApiHealth {
    state: ApiState,
}

impl HealthCheck for ApiHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let db = self.state.db_status();
        if !db.up {
            reasons.push(format!(
                "database is not answering ({})",
                db.last_error.unwrap_or("unknown")
            ));
        }
        if self.state.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".into());
        }
        reasons
    }

    fn detail(&self) -> serde_json::Value {
        let db = self.state.db_status();
        let breaker = self.state.users_client.breaker.snapshot();
        let cache = |rt: &ReadThrough| {
            json!({
                "state": rt.state().as_str(),
                "ttl_secs": rt.config().ttl.as_secs_f64(),
                "l1": rt.config().l1.is_some(),
                "stats": rt.stats(),
            })
        };
        json!({
            "role": "api",
            "database": {
                "backend": self.state.store.backend().as_str(),
                "state": if db.up { "up" } else { "down" },
                "last_error": db.last_error,
                "pool": self.state.store.pool_status(),
            },
            "redis": self.state.redis.health(),
            "cache": {
                "users": cache(&self.state.users),
                "products": cache(&self.state.products),
                "warm_up": *self.state.warm_up.lock().expect("warm-up status lock poisoned"),
            },
            "users_client": {
                "base_url": self.state.users_client.base,
                "breaker": {
                    "state": breaker.state.as_str(),
                    "consecutive_failures": breaker.consecutive_failures,
                    "times_opened": breaker.times_opened,
                    "rejected": breaker.rejected,
                },
            },
            "draining": self.state.draining.load(Ordering::Relaxed),
        })
    }
}

/// A user as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct UserSchema {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Lower-case email address.
    pub email: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A product as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct ProductSchema {
    /// Primary key.
    pub id: i64,
    /// Product name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i32,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A user to create; unknown fields are refused.
#[derive(Serialize, ToSchema)]
pub struct NewUserSchema {
    /// 1 to 100 characters, no control characters.
    pub name: String,
    /// `local@domain`, at most 254 characters; must be unused.
    pub email: String,
}

/// Fields of a user to change; absent fields keep their value.
#[derive(Serialize, ToSchema)]
pub struct UpdateUserSchema {
    /// A new name.
    pub name: Option<String>,
    /// A new email address.
    pub email: Option<String>,
}

/// An order as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct OrderSchema {
    /// Primary key.
    pub id: i64,
    /// Who ordered.
    pub user_id: i64,
    /// What was ordered.
    pub product_id: i64,
    /// How many units.
    pub quantity: i32,
    /// Unit price at the time of the order times quantity, in cents.
    pub total_cents: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// An order to place; unknown fields are refused.
#[derive(Serialize, ToSchema)]
pub struct NewOrderSchema {
    /// Who orders; must be known to the users endpoint.
    pub user_id: i64,
    /// What is ordered; must exist.
    pub product_id: i64,
    /// 1 to 1000 units.
    pub quantity: u32,
}

/// A read answered through the cache: where it came from, and the value.
#[derive(Serialize, ToSchema)]
pub struct CachedSchema {
    /// `cache`, `db` or `stale`.
    pub source: String,
    /// The user, product or page of products.
    pub data: serde_json::Value,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "holdfast api",
        description = "Users and products from a SQL database, read through a Redis cache that is never slower or less available than the database alone. Reads carry `source` in their body and an `X-Cache` header."
    ),
    components(schemas(
        Problem,
        UserSchema,
        ProductSchema,
        NewUserSchema,
        UpdateUserSchema,
        OrderSchema,
        NewOrderSchema,
        CachedSchema,
        StoreFiguresSchema,
        SimulateSchema
    ))
)]
struct ApiDoc;

/// The public router: API, health, OpenAPI and Swagger UI, inside the stack.
pub fn router(state: ApiState, stack_cfg: &StackConfig) -> Router {
    let health: Arc<dyn HealthCheck> = Arc::new(ApiHealth {
        state: state.clone(),
    });
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(search_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(create_user))
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(create_order))
        .routes(routes!(get_order))
        .routes(routes!(store_figures))
        .routes(routes!(store_join))
        .routes(routes!(store_look_around))
        .routes(routes!(store_served))
        .routes(routes!(store_leave))
        .routes(routes!(store_simulate))
        .with_state(state)
        .split_for_parts();
    let app = api
        .route_layer(axum::middleware::from_fn(seed_request_metrics))
        .merge(health_routes(health))
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", openapi));
    stack(app, stack_cfg)
}

/// Records the metrics demo's request figures under the seed's names:
/// `api_request_duration_seconds{endpoint,method}` for every answered
/// request and `api_errors_total{endpoint}` for those answered with a 4xx
/// or 5xx. The endpoint is the route template (`/api/users/{id}`), never
/// the concrete path, so the label stays low-cardinality.
async fn seed_request_metrics(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let endpoint = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        metric_names::API_REQUEST_DURATION,
        "endpoint" => endpoint.clone(),
        "method" => method
    )
    .record(started.elapsed().as_secs_f64());
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        metrics::counter!(metric_names::API_ERRORS, "endpoint" => endpoint).increment(1);
    }
    response
}

/// A row id from a path: a positive integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityId(i64);

impl EntityId {
    /// Parses a decimal id of at least 1.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id >= 1)
            .map(EntityId)
            .ok_or_else(|| ApiError::bad_request("invalid_id", "an id is a positive integer"))
    }

    /// The id.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The cache key of this id.
    fn key(self) -> String {
        self.0.to_string()
    }
}

/// Query parameters as they arrive; parsed by the handlers into bounded
/// values so that a bad one gets its own code.
#[derive(Deserialize, Default)]
struct RawQuery {
    q: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn query(raw: Result<Query<RawQuery>, QueryRejection>) -> Result<RawQuery, ApiError> {
    raw.map(|Query(q)| q)
        .map_err(|_| ApiError::bad_request("invalid_query", "the query string cannot be read"))
}

/// A number in `range` from an optional parameter, `default` when absent.
fn bounded(
    raw: Option<&str>,
    name: &str,
    code: &'static str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                code,
                format!(
                    "`{name}` must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// The search text: required, 1 to [`MAX_SEARCH_CHARS`] characters after
/// trimming. Any characters are allowed: the store matches them literally
/// and sends them as a bind parameter.
fn search_text(raw: Option<String>) -> Result<String, ApiError> {
    let text = raw.unwrap_or_default().trim().to_owned();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_SEARCH_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`q` is required and must have 1 to {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(text)
}

/// The HTTP form of a store failure. Only texts written for clients are
/// sent; whatever the driver said goes to the log.
fn store_error(err: StoreError) -> ApiError {
    if let Some(after) = err.retry_after() {
        tracing::warn!(error = %err, "database unavailable");
        return ApiError::unavailable(err.code(), "the database is not answering", after);
    }
    match err {
        StoreError::NotFound { entity, id } => {
            ApiError::not_found(format!("{entity} {id} not found"))
        }
        StoreError::Conflict { reason } => ApiError::new(StatusCode::CONFLICT, "conflict", reason),
        StoreError::Invalid { reason } => {
            tracing::info!(%reason, "database refused a value");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "the database refused a value of this request",
            )
        }
        other => {
            tracing::error!(error = %other, "database error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

/// A store failure as a cache loader error: only its code travels, so no
/// driver text can reach a client through the cache.
pub(crate) fn load_error(err: StoreError) -> LoadError {
    tracing::warn!(error = %err, "cache loader failed");
    if err.is_retryable() {
        LoadError::retryable(err.code())
    } else {
        LoadError::permanent(err.code())
    }
}

fn cache_error(err: CacheError) -> ApiError {
    if err.is_retryable() {
        ApiError::unavailable(
            "db_unavailable",
            "the database is not answering and no cached copy is available",
            Duration::from_secs(1),
        )
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

/// `{"source", "data"}` with `X-Cache`, or a 404 problem (still with
/// `X-Cache`, as "not found" is cached too).
/// One entity by id through its cache: `{source, data}` with `X-Cache`, or
/// a 404 naming the entity.
async fn read_by_id<T, F, Fut>(
    cache: &ReadThrough,
    id: EntityId,
    entity: &'static str,
    load: F,
) -> Result<Response, ApiError>
where
    T: Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce(i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<T>, StoreError>> + Send + 'static,
{
    let cached = cache
        .get(&id.key(), move || async move {
            load(id.get()).await.map_err(load_error)
        })
        .await
        .map_err(cache_error)?;
    Ok(cached_response::<T>(cached, || {
        format!("{entity} {} not found", id.get())
    }))
}

fn cached_response<T: Serialize>(cached: Cached<T>, what: impl FnOnce() -> String) -> Response {
    let x_cache = HeaderValue::from_static(cached.x_cache());
    let mut response = match cached.value {
        Some(value) => {
            Json(json!({"source": cached.source.as_str(), "data": value})).into_response()
        }
        None => ApiError::not_found(what()).into_response(),
    };
    response.headers_mut().insert(X_CACHE, x_cache);
    response
}

/// One user, through the users cache.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user, with its source; header X-Cache", body = CachedSchema),
        (status = 400, description = "Not a positive integer id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, nothing cached", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let store = state.store.clone();
    read_by_id(&state.users, id, "user", move |id| async move {
        store.user(id).await
    })
    .await
}

/// Users whose name or email contains `q` (literally, ignoring ASCII case),
/// from the database.
#[utoipa::path(
    get,
    path = "/api/users/search",
    params(
        ("q" = String, Query, description = "Text to find, 1 to 100 characters"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
    ),
    responses(
        (status = 200, description = "Matching users, in id order", body = [UserSchema]),
        (status = 400, description = "Missing or bad `q` or `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn search_users(
    State(state): State<ApiState>,
    raw: Result<Query<RawQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = query(raw)?;
    let text = search_text(raw.q)?;
    let limit = bounded(
        raw.limit.as_deref(),
        "limit",
        "invalid_limit",
        1..=MAX_LIMIT,
        DEFAULT_LIMIT,
    )?;
    let users = state
        .store
        .search_users(&text, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(users).into_response())
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/api/users",
    request_body = NewUserSchema,
    responses(
        (status = 201, description = "Created; Location names it", body = UserSchema),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already used", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or email, or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_user(
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    let user = state.store.create_user(new).await.map_err(store_error)?;
    // The id may have been looked up (and "not found" cached) before.
    state.users.invalidate(&user.id.to_string()).await;
    let location = format!("/api/users/{}", user.id);
    let mut response = (StatusCode::CREATED, Json(user)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Changes a user's name or email.
#[utoipa::path(
    put,
    path = "/api/users/{id}",
    params(("id" = i64, Path, description = "User id")),
    request_body = UpdateUserSchema,
    responses(
        (status = 200, description = "The user as now stored", body = UserSchema),
        (status = 400, description = "Bad id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already used", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or email, or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(changes): ApiJson<UpdateUser>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let updated = state
        .store
        .update_user(id.get(), changes)
        .await
        .map_err(store_error);
    // Invalidate whatever happened: a failed call may still have written.
    state.users.invalidate(&id.key()).await;
    let user =
        updated?.ok_or_else(|| ApiError::not_found(format!("user {} not found", id.get())))?;
    Ok(Json(user).into_response())
}

/// Deletes a user who has no orders.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user has orders", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let deleted = state.store.delete_user(id.get()).await.map_err(store_error);
    state.users.invalidate(&id.key()).await;
    if !deleted? {
        return Err(ApiError::not_found(format!("user {} not found", id.get())));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A page of products in id order, through the products cache.
#[utoipa::path(
    get,
    path = "/api/products",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("offset" = Option<u32>, Query, description = "Products to skip, default 0"),
    ),
    responses(
        (status = 200, description = "The page, with its source; header X-Cache", body = CachedSchema),
        (status = 400, description = "Bad `limit` or `offset`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, nothing cached", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_products(
    State(state): State<ApiState>,
    raw: Result<Query<RawQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = query(raw)?;
    let limit = bounded(
        raw.limit.as_deref(),
        "limit",
        "invalid_limit",
        1..=MAX_LIMIT,
        DEFAULT_LIMIT,
    )?;
    let offset = bounded(
        raw.offset.as_deref(),
        "offset",
        "invalid_offset",
        0..=MAX_OFFSET,
        0,
    )?;
    let store = state.store.clone();
    let cached = state
        .products
        .get(&format!("page:{limit}:{offset}"), move || async move {
            store
                .products(limit, offset)
                .await
                .map(Some)
                .map_err(load_error)
        })
        .await
        .map_err(cache_error)?;
    Ok(cached_response::<Vec<Product>>(cached, || {
        "no such page".into()
    }))
}

/// One product, through the products cache.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    params(("id" = i64, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product, with its source; header X-Cache", body = CachedSchema),
        (status = 400, description = "Not a positive integer id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, nothing cached", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_product(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let store = state.store.clone();
    read_by_id(&state.products, id, "product", move |id| async move {
        store.product(id).await
    })
    .await
}

/// Places an order once the users endpoint, called over HTTP, knows the
/// user.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    request_body = NewOrderSchema,
    responses(
        (status = 201, description = "Created; Location names it", body = OrderSchema),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown user (`unknown_user`) or product (`unknown_product`), bad quantity or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The users endpoint answered unexpectedly (`users_bad_response`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Users endpoint unavailable (`users_unavailable`) or database unavailable; with Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_order(
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewOrder>,
) -> Result<Response, ApiError> {
    let unknown_user = |id: i64| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_user",
            format!("user {id} does not exist"),
        )
    };
    // Ids below 1 exist nowhere; the users endpoint would call them bad.
    if new.user_id < 1 {
        return Err(unknown_user(new.user_id));
    }
    let exists = state
        .users_client
        .user_exists(new.user_id)
        .await
        .map_err(users_error)?;
    if !exists {
        return Err(unknown_user(new.user_id));
    }
    let order = match state.store.create_order(new).await {
        Ok(order) => order,
        Err(StoreError::NotFound {
            entity: Entity::Product,
            id,
        }) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_product",
                format!("product {id} does not exist"),
            ));
        }
        // Deleted between the lookup and the insert.
        Err(StoreError::NotFound {
            entity: Entity::User,
            id,
        }) => return Err(unknown_user(id)),
        Err(other) => return Err(store_error(other)),
    };
    let location = format!("/api/orders/{}", order.id);
    let mut response = (StatusCode::CREATED, Json(order)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One order, from the database.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    params(("id" = i64, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderSchema),
        (status = 400, description = "Not a positive integer id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = EntityId::parse(&id)?;
    state
        .store
        .order(id.get())
        .await
        .map_err(store_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("order {} not found", id.get())))
}

/// The `service` label of every store demo metric.
const STORE_SERVICE: &str = "store";

/// Customers a simulation runs when the body names none.
pub const DEFAULT_SIMULATED_CUSTOMERS: u32 = 10;

/// Most customers one simulation may run.
pub const MAX_SIMULATED_CUSTOMERS: u32 = 1000;

/// The store demo's figures. Each one is changed only by a checked atomic
/// step, so concurrent requests never take a figure below zero; a response
/// reads the four figures one after the other, so under concurrent
/// requests they may come from slightly different moments.
#[derive(Default)]
struct StoreFigures {
    waiting: AtomicU64,
    active: AtomicU64,
    served: AtomicU64,
    total: AtomicU64,
}

/// The store demo's figures as answered.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct StoreFiguresSchema {
    /// Customers who joined and wait to look around.
    pub waiting: u64,
    /// Customers looking around, not yet served.
    pub active: u64,
    /// Customers served since the api started.
    pub served: u64,
    /// Customers in the store: joined and not yet left.
    pub total: u64,
}

/// A simulation to run; unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateSchema {
    /// Customers to run through the store, 1 to 1000 (default 10).
    pub customers: Option<u32>,
}

/// A store demo event, the `event` label of `user_events_total`.
#[derive(Clone, Copy)]
enum StoreEvent {
    Joined,
    LookingAround,
    Served,
    Left,
}

impl StoreEvent {
    fn as_str(self) -> &'static str {
        match self {
            StoreEvent::Joined => "joined",
            StoreEvent::LookingAround => "looking_around",
            StoreEvent::Served => "served",
            StoreEvent::Left => "left",
        }
    }
}

/// Takes one from `figure` unless it is zero; false when it was.
fn take_one(figure: &AtomicU64) -> bool {
    figure
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl StoreFigures {
    fn snapshot(&self) -> StoreFiguresSchema {
        StoreFiguresSchema {
            waiting: self.waiting.load(Ordering::Acquire),
            active: self.active.load(Ordering::Acquire),
            served: self.served.load(Ordering::Acquire),
            total: self.total.load(Ordering::Acquire),
        }
    }

    /// Counts `count` events of one kind.
    fn record(event: StoreEvent, count: u64) {
        metrics::counter!(
            metric_names::STORE_USER_EVENTS,
            "event" => event.as_str(),
            "service" => STORE_SERVICE
        )
        .increment(count);
    }

    /// Sets the gauges to the current figures and returns them.
    fn publish(&self) -> StoreFiguresSchema {
        let now = self.snapshot();
        for (name, value) in [
            (metric_names::STORE_USERS_WAITING, now.waiting),
            (metric_names::STORE_USERS_ACTIVE, now.active),
            (metric_names::STORE_USERS_SERVED, now.served),
            (metric_names::STORE_USERS_TOTAL, now.total),
        ] {
            // Figures stay far below 2^53, so the conversion is exact.
            metrics::gauge!(name, "service" => STORE_SERVICE).set(value as f64);
        }
        now
    }

    fn join(&self) -> StoreFiguresSchema {
        self.total.fetch_add(1, Ordering::AcqRel);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::Joined, 1);
        self.publish()
    }

    fn look_around(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.waiting) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "nobody_waiting",
                "no customer is waiting to look around",
            ));
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::LookingAround, 1);
        Ok(self.publish())
    }

    fn serve(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.active) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "nobody_active",
                "no customer is looking around to be served",
            ));
        }
        self.served.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::Served, 1);
        Ok(self.publish())
    }

    fn leave(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.total) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "nobody_in_store",
                "no customer is in the store to leave",
            ));
        }
        Self::record(StoreEvent::Left, 1);
        Ok(self.publish())
    }

    /// Runs `customers` through join, look-around, served and leave at
    /// once. Each passes every step, so waiting, active and total end where
    /// they started and are not touched; only served grows, and every event
    /// is counted.
    fn simulate(&self, customers: u32) -> StoreFiguresSchema {
        let n = u64::from(customers);
        for event in [
            StoreEvent::Joined,
            StoreEvent::LookingAround,
            StoreEvent::Served,
            StoreEvent::Left,
        ] {
            Self::record(event, n);
        }
        self.served.fetch_add(n, Ordering::AcqRel);
        self.publish()
    }
}

/// The number of customers from an optional simulate body.
fn simulated_customers(body: Result<Bytes, BytesRejection>) -> Result<u32, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_SIMULATED_CUSTOMERS);
    }
    let request: SimulateSchema = serde_json::from_slice(&body).map_err(|err| {
        if err.is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the body does not fit: {err}"),
            )
        } else {
            ApiError::bad_request("malformed_json", format!("the body is not JSON: {err}"))
        }
    })?;
    let customers = request.customers.unwrap_or(DEFAULT_SIMULATED_CUSTOMERS);
    if !(1..=MAX_SIMULATED_CUSTOMERS).contains(&customers) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("`customers` must be from 1 to {MAX_SIMULATED_CUSTOMERS}"),
        ));
    }
    Ok(customers)
}

/// The store demo's current figures.
#[utoipa::path(
    get,
    path = "/api/store",
    tag = "store",
    responses(
        (status = 200, description = "The current figures", body = StoreFiguresSchema),
    )
)]
async fn store_figures(State(state): State<ApiState>) -> Json<StoreFiguresSchema> {
    Json(state.shop.snapshot())
}

/// A customer joins the store and waits.
#[utoipa::path(
    post,
    path = "/api/store/join",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the join", body = StoreFiguresSchema),
    )
)]
async fn store_join(State(state): State<ApiState>) -> Json<StoreFiguresSchema> {
    Json(state.shop.join())
}

/// A waiting customer starts looking around.
#[utoipa::path(
    post,
    path = "/api/store/look-around",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        (status = 409, description = "Nobody is waiting (`nobody_waiting`); nothing changed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn store_look_around(
    State(state): State<ApiState>,
) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.look_around().map(Json)
}

/// A customer looking around is served.
#[utoipa::path(
    post,
    path = "/api/store/served",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        (status = 409, description = "Nobody is looking around (`nobody_active`); nothing changed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn store_served(State(state): State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.serve().map(Json)
}

/// A customer leaves the store.
#[utoipa::path(
    post,
    path = "/api/store/leave",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        (status = 409, description = "Nobody is in the store (`nobody_in_store`); nothing changed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn store_leave(State(state): State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.leave().map(Json)
}

/// Runs customers through join, look-around, served and leave at once.
#[utoipa::path(
    post,
    path = "/api/store/simulate",
    tag = "store",
    request_body(content = Option<SimulateSchema>, description = "Optional; `customers` defaults to 10"),
    responses(
        (status = 200, description = "The figures after the simulation", body = StoreFiguresSchema),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`customers` not from 1 to 1000, or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn store_simulate(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StoreFiguresSchema>, ApiError> {
    let customers = simulated_customers(body)?;
    Ok(Json(state.shop.simulate(customers)))
}

/// Pings the database every [`DB_PING_INTERVAL`] and records the outcome
/// for readiness. Each ping is bounded by the store's acquire timeout; the
/// task ends when `shutdown` is cancelled.
async fn watch_database(store: Store, db: Arc<Mutex<DbStatus>>, shutdown: CancellationToken) {
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = store.ping() => outcome,
        };
        let status = match outcome {
            Ok(()) => DbStatus {
                up: true,
                last_error: None,
            },
            Err(err) => {
                tracing::warn!(error = %err, "database ping failed");
                DbStatus {
                    up: false,
                    last_error: Some(err.code()),
                }
            }
        };
        *db.lock().expect("db status lock poisoned") = status;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DB_PING_INTERVAL) => {}
        }
    }
}

/// `http://host:port` of a bound listener, as this process can reach it:
/// an unspecified address (`0.0.0.0`, `::`) becomes loopback.
fn own_base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A built api: listeners bound, database migrated and seeded, Redis
/// supervisor, caches and the database watch started.
pub struct Api {
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: ApiState,
    stack: StackConfig,
    background: CancellationToken,
    /// The caches' invalidation listeners and the database watch; they end
    /// when `background` is cancelled.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Api {
    /// Binds the listeners (port 0 picks a free one), opens, migrates and
    /// seeds the store, and starts Redis and the caches.
    ///
    /// # Errors
    /// A listener cannot be bound, or the database cannot be opened,
    /// migrated or seeded.
    pub async fn build(settings: ApiSettings) -> std::io::Result<Self> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let listener = TcpListener::bind(settings.listen).await?;
        let admin = match settings.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let database = |what: &str, err: StoreError| {
            std::io::Error::other(format!(
                "{what} {}: {err}",
                settings.database_url.redacted()
            ))
        };
        let store = Store::open(&settings.database_url, settings.store_options.clone())
            .await
            .map_err(|e| database("opening", e))?
            .with_product_read_delay(settings.products_db_delay);
        store
            .migrate()
            .await
            .map_err(|e| database("migrating", e))?;
        let seeded = store
            .seed_with(settings.seed_users, settings.seed_products)
            .await
            .map_err(|e| database("seeding", e))?;
        tracing::info!(
            database = %settings.database_url,
            users_inserted = seeded.users_inserted,
            products_inserted = seeded.products_inserted,
            "database ready"
        );

        let users_base = match settings.users_base_url.clone() {
            Some(base) => base,
            None => own_base_url(listener.local_addr()?),
        };
        let users_client = UsersClient::new(users_base, settings.users_client.clone())?;

        let background = CancellationToken::new();
        let redis = Redis::start(settings.redis.clone(), background.clone())
            .map_err(std::io::Error::other)?;
        let users = ReadThrough::new(redis.clone(), "users", settings.cache.clone());
        let products = ReadThrough::new(redis.clone(), "products", settings.cache.clone());
        let db = Arc::new(Mutex::new(DbStatus {
            up: true,
            last_error: None,
        }));
        let warm_up = Arc::new(Mutex::new(WarmUp::Off));
        let warm = WarmUpTask {
            products: products.clone(),
            store: store.clone(),
            redis: redis.clone(),
            count: settings.warm_products,
            page_limit: DEFAULT_LIMIT,
            status: warm_up.clone(),
        };
        let tasks = vec![
            users.start(background.clone()),
            products.start(background.clone()),
            tokio::spawn(warm.run(background.clone())),
            tokio::spawn(watch_database(
                store.clone(),
                db.clone(),
                background.clone(),
            )),
        ];
        let state = ApiState {
            store,
            redis,
            users,
            products,
            db,
            draining: Arc::new(AtomicBool::new(false)),
            shop: Arc::new(StoreFigures::default()),
            users_client: Arc::new(users_client),
            warm_up,
        };
        Ok(Self {
            listener,
            admin,
            state,
            stack: settings.stack,
            background,
            tasks,
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

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// requests in progress finish, stops the background tasks and closes
    /// the database pool.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let health: Arc<dyn HealthCheck> = Arc::new(ApiHealth {
            state: self.state.clone(),
        });
        let app = router(self.state.clone(), &self.stack);
        let admin = self.admin.map(|listener| (listener, admin_router(health)));
        let draining = self.state.draining.clone();
        let result = serve_role(
            "api",
            self.listener,
            app,
            admin,
            draining,
            shutdown,
            self.background,
        )
        .await;
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.store.close().await;
        result
    }
}
