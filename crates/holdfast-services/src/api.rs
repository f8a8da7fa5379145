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
//!
//! Readiness follows the database (pinged in the background); Redis being
//! down is a declared degraded mode, visible in `/health`, not a reason to
//! take the instance out of rotation.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use holdfast_cache::{CacheError, Cached, LoadError, ReadThrough};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_store::{NewUser, Product, Store, StoreError, UpdateUser, User};
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
    /// Users seeded into an empty table at start.
    pub seed_users: u32,
    /// Products seeded into an empty table at start.
    pub seed_products: u32,
    /// Middleware limits (body size, in-flight cap, timeout).
    pub stack: StackConfig,
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
            seed_users: holdfast_store::seed::DEFAULT_USERS,
            seed_products: holdfast_store::seed::DEFAULT_PRODUCTS,
            stack: StackConfig::default(),
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
        CachedSchema
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
        .with_state(state)
        .split_for_parts();
    let app = api
        .merge(health_routes(health))
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", openapi));
    stack(app, stack_cfg)
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
fn load_error(err: StoreError) -> LoadError {
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
    let cached = state
        .users
        .get(&id.key(), move || async move {
            store.user(id.get()).await.map_err(load_error)
        })
        .await
        .map_err(cache_error)?;
    Ok(cached_response::<User>(cached, || {
        format!("user {} not found", id.get())
    }))
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
    let cached = state
        .products
        .get(&id.key(), move || async move {
            store.product(id.get()).await.map_err(load_error)
        })
        .await
        .map_err(cache_error)?;
    Ok(cached_response::<Product>(cached, || {
        format!("product {} not found", id.get())
    }))
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

        let background = CancellationToken::new();
        let redis = Redis::start(settings.redis.clone(), background.clone())
            .map_err(std::io::Error::other)?;
        let users = ReadThrough::new(redis.clone(), "users", settings.cache.clone());
        let products = ReadThrough::new(redis.clone(), "products", settings.cache.clone());
        let db = Arc::new(Mutex::new(DbStatus {
            up: true,
            last_error: None,
        }));
        let tasks = vec![
            users.start(background.clone()),
            products.start(background.clone()),
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
