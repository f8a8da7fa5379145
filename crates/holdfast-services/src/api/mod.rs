//! The api role: users and products from the SQL store, read through the
//! cache, orders, and the metrics demo's store.
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
//! How failures map to HTTP (decided in [`crate::problem`]):
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
//! Readiness follows the database (pinged in the background); Redis being
//! down is a declared degraded mode, visible in `/health`, not a reason to
//! take the instance out of rotation.
//!
//! Where each part lives (each feature returns its own routes, and
//! [`router`] merges them):
//!
//! | file | what |
//! | --- | --- |
//! | `users.rs` | read, search, create, change and delete users |
//! | `products.rs` | one product and pages of products |
//! | `orders.rs` | placing and reading orders |
//! | `users_client.rs` | the order service's HTTP client for the users endpoint, with its breaker |
//! | `store_demo.rs` | the metrics demo's store (`/api/store/*`) |
//! | `schemas.rs` | the OpenAPI shapes of the store's rows and inputs, and the patterns of the texts its parsers take |
//! | `cached.rs` | reads through the cache: `{source, data}` and `X-Cache` |
//! | `extract.rs` | ids and query parameters parsed into bounded values (and documented) |
//! | `health.rs`, `db_watch.rs` | readiness and detail, and the database ping behind them |
//! | this file | settings, shared state, the router, build and run |

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use holdfast_cache::ReadThrough;
use holdfast_core::{Keys, metric_names};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::health::{Health, health_routes};
use crate::http::{StackConfig, every_interface, loopback_only, stack};
use crate::problem::Problem;
use crate::role::RoleListeners;
use crate::start::StartError;
use crate::warm_up::{WarmUp, WarmUpTask};

mod cached;
mod db_watch;
mod extract;
mod health;
mod orders;
mod products;
mod schemas;
mod store_demo;
mod users;
mod users_client;

pub use cached::X_CACHE;
pub(crate) use cached::load_error;
pub use extract::{DEFAULT_LIMIT, EntityId, MAX_LIMIT};
pub use holdfast_cache::CacheConfig;
pub use holdfast_store::{DatabaseUrl, StoreOptions};
pub use products::MAX_OFFSET;
pub use schemas::{
    CacheSource, CachedProductPageSchema, CachedProductSchema, CachedUserSchema, NewOrderSchema,
    NewUserSchema, OrderSchema, ProductSchema, UpdateUserSchema, UserSchema,
};
pub(crate) use schemas::{location_header, text_schema, trimmed_text_pattern};
pub use store_demo::{
    DEFAULT_SIMULATED_CUSTOMERS, MAX_SIMULATED_CUSTOMERS, SimulateSchema, StoreFiguresSchema,
};
pub use users::MAX_SEARCH_CHARS;
pub use users_client::UsersClientConfig;
pub(crate) use users_client::UsersFailure;

use db_watch::DbStatus;
use store_demo::StoreFigures;
use users_client::UsersClient;

/// Settings of the api role.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Public listener (default [`Self::DEFAULT_LISTEN`]); also serves
    /// `/health*`.
    pub listen: SocketAddr,
    /// Admin listener for `/health*` and `/metrics` (default
    /// [`Self::DEFAULT_ADMIN_LISTEN`]); `None` serves none.
    pub admin_listen: Option<SocketAddr>,
    /// Redis connection; `enabled: false` runs with no Redis at all.
    pub redis: RedisConfig,
    /// The source of truth (default: the SQLite file
    /// [`Self::DEFAULT_DATABASE_FILE`], its directory created when
    /// missing).
    pub database_url: DatabaseUrl,
    /// Pool limits and timeouts of the store.
    pub store_options: StoreOptions,
    /// Artificial delay before every product read from the database, so a
    /// demo shows the database next to the cache (default
    /// [`Self::DEFAULT_PRODUCTS_DB_DELAY`]).
    pub products_db_delay: Duration,
    /// Cache settings, shared by the users and products caches (default
    /// TTL [`Self::DEFAULT_CACHE_TTL`], no L1).
    pub cache: CacheConfig,
    /// Products (the first ids) and the first page of the product list
    /// loaded into the cache at start, in the background (default
    /// [`Self::DEFAULT_WARM_PRODUCTS`]; 0 switches the warm-up off).
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
    /// Port of the public listener unless configured otherwise.
    pub const DEFAULT_PORT: u16 = 5020;
    /// Port of the admin listener unless configured otherwise.
    pub const DEFAULT_ADMIN_PORT: u16 = 5021;
    /// The public listener unless configured otherwise: every interface.
    pub const DEFAULT_LISTEN: SocketAddr = every_interface(Self::DEFAULT_PORT);
    /// The admin listener unless configured otherwise: loopback only, so
    /// metrics, logs and health details are not offered to the network
    /// unless asked for (`0.0.0.0:PORT` where a kubelet or Prometheus
    /// must reach them).
    pub const DEFAULT_ADMIN_LISTEN: SocketAddr = loopback_only(Self::DEFAULT_ADMIN_PORT);
    /// The SQLite file used when no database URL is given.
    pub const DEFAULT_DATABASE_FILE: &str = "./data/holdfast.db";
    /// Largest request body, in bytes.
    pub const DEFAULT_BODY_LIMIT: usize = StackConfig::DEFAULT_BODY_LIMIT;
    /// How long a cached user or product is fresh.
    pub const DEFAULT_CACHE_TTL: Duration = CacheConfig::DEFAULT_TTL;
    /// Products warmed into the cache at start.
    pub const DEFAULT_WARM_PRODUCTS: u32 = 100;
    /// Artificial delay of product reads from the database: none.
    pub const DEFAULT_PRODUCTS_DB_DELAY: Duration = Duration::ZERO;

    /// Defaults for the given Redis.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            admin_listen: Some(Self::DEFAULT_ADMIN_LISTEN),
            redis,
            database_url: DatabaseUrl::sqlite_file(FsPath::new(Self::DEFAULT_DATABASE_FILE)),
            store_options: StoreOptions::default(),
            products_db_delay: Self::DEFAULT_PRODUCTS_DB_DELAY,
            cache: CacheConfig::default(),
            warm_products: Self::DEFAULT_WARM_PRODUCTS,
            seed_users: holdfast_store::seed::DEFAULT_USERS,
            seed_products: holdfast_store::seed::DEFAULT_PRODUCTS,
            stack: StackConfig {
                body_limit: Self::DEFAULT_BODY_LIMIT,
                ..StackConfig::default()
            },
            users_base_url: None,
            users_client: UsersClientConfig::default(),
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Store,
    redis: Redis,
    users: ReadThrough,
    products: ReadThrough,
    /// Written by the database watch only; read by health checks. A std
    /// mutex: held for a copy, never across an await.
    db: Arc<Mutex<DbStatus>>,
    draining: Arc<AtomicBool>,
    /// The store demo's figures.
    shop: Arc<StoreFigures>,
    /// The order service's client for the users endpoint.
    users_client: Arc<UsersClient>,
    /// How the cache warm-up went.
    warm_up: Arc<Mutex<WarmUp>>,
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
        CacheSource,
        CachedUserSchema,
        CachedProductSchema,
        CachedProductPageSchema,
        StoreFiguresSchema,
        SimulateSchema
    ))
)]
struct ApiDoc;

/// The public router: every feature's routes, health, OpenAPI and Swagger
/// UI, inside the stack.
pub fn router(state: ApiState, stack_cfg: &StackConfig) -> Router {
    let health: Health = Arc::new(state.clone());
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(users::routes())
        .merge(products::routes())
        .merge(orders::routes())
        .merge(store_demo::routes())
        .with_state(state)
        .split_for_parts();
    let openapi = crate::problem::listener_doc::public(openapi, stack_cfg);
    let app = api
        .route_layer(axum::middleware::from_fn(demo_request_metrics))
        .merge(health_routes(health))
        .merge(crate::http::swagger_ui(openapi));
    stack(app, stack_cfg)
}

/// Records the metrics demo's request figures under the names the
/// reproduced store service used:
/// `api_request_duration_seconds{endpoint,method}` for every answered
/// request and `api_errors_total{endpoint}` for those answered with a 4xx
/// or 5xx. The endpoint is the route template (`/api/users/{id}`), never
/// the concrete path, so the label stays low-cardinality.
async fn demo_request_metrics(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
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
    /// Its tasks are the Redis supervisor, the caches' listeners and loads,
    /// the warm-up and the database watch.
    listeners: RoleListeners,
    state: ApiState,
}

impl Api {
    /// Binds the listeners (port 0 picks a free one), opens, migrates and
    /// seeds the store, and starts Redis and the caches.
    ///
    /// # Errors
    /// A listener cannot be bound, the database cannot be opened, migrated
    /// or seeded, or the Redis or users client settings are unusable.
    pub async fn build(settings: ApiSettings) -> Result<Self, StartError> {
        let mut listeners = RoleListeners::bind(
            settings.listen,
            settings.admin_listen,
            settings.stack.clone(),
        )
        .await?;
        let database = |action: &'static str| {
            let url = settings.database_url.redacted();
            move |source: StoreError| StartError::Database {
                action,
                url,
                source,
            }
        };
        let store = Store::open(&settings.database_url, settings.store_options.clone())
            .await
            .map_err(database("opening"))?
            .with_product_read_delay(settings.products_db_delay);
        store.migrate().await.map_err(database("migrating"))?;
        let seeded = store
            .seed_with(settings.seed_users, settings.seed_products)
            .await
            .map_err(database("seeding"))?;
        tracing::info!(
            database = %settings.database_url,
            users_inserted = seeded.users_inserted,
            products_inserted = seeded.products_inserted,
            "database ready"
        );

        let users_base = match settings.users_base_url.clone() {
            Some(base) => base,
            None => {
                let addr = listeners.local_addr().map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
                own_base_url(addr)
            }
        };
        let users_client = UsersClient::new(users_base, settings.users_client.clone())
            .map_err(StartError::UsersClient)?;

        let redis = Redis::start(settings.redis.clone(), listeners.tasks())?;
        listeners.announce("api", &redis, &Keys::new(settings.cache.prefix.clone()));
        let tasks = listeners.tasks();
        let users = ReadThrough::new(redis.clone(), "users", settings.cache.clone());
        let products = ReadThrough::new(redis.clone(), "products", settings.cache.clone());
        let db = Arc::new(Mutex::new(DbStatus::up()));
        let warm_up = Arc::new(Mutex::new(WarmUp::Off));
        let warm = WarmUpTask {
            products: products.clone(),
            store: store.clone(),
            redis: redis.clone(),
            count: settings.warm_products,
            page_limit: DEFAULT_LIMIT,
            status: warm_up.clone(),
        };
        users.start(tasks);
        products.start(tasks);
        tasks.spawn(warm.run(tasks.stop_token()));
        tasks.spawn(db_watch::watch_database(
            store.clone(),
            db.clone(),
            tasks.stop_token(),
        ));
        let state = ApiState {
            store,
            redis,
            users,
            products,
            db,
            draining: listeners.draining(),
            shop: Arc::new(StoreFigures::default()),
            users_client: Arc::new(users_client),
            warm_up,
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

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// requests in progress finish, stops the background tasks and closes
    /// the database pool.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = router(self.state.clone(), self.listeners.stack());
        let health: Health = Arc::new(self.state.clone());
        let result = self.listeners.serve("api", app, health, shutdown).await;
        self.state.store.close().await;
        result
    }
}
