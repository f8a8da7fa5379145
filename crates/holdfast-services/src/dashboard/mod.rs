//! The dashboard role, first part: the overview of every instance of the
//! stack, rendered on the server, and the same state as JSON.
//!
//! Instances come from the registry in Redis ([`crate::registry`]); each
//! one's admin `/health` is then read directly, all at once, each bounded
//! by [`HEALTH_TIMEOUT`]. With Redis down the dashboard keeps the last list
//! it read and still polls those instances, so it shows what is up while
//! the registry is not. A page or `GET /api/dashboard/state` computes the
//! state fresh; at most [`MAX_CONCURRENT_READS`] are computed at once.
//!
//! Live charts, streams, cache, users, loop tests, logs and chaos controls
//! are the next parts of the dashboard issue; this module is where they go.

mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_core::Keys;
use holdfast_redis::{Redis, RedisConfig};
use tokio_util::sync::CancellationToken;

pub use state::{DashboardState, InstanceView, RedisChange};

use crate::health::{Health, HealthCheck};
use crate::http::{StackConfig, every_interface};
use crate::problem::ApiError;
use crate::role::RoleListeners;
use crate::start::StartError;

/// How long the dashboard waits for one instance's `/health`.
pub const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the list of instances is read between page views.
pub const REGISTRY_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// States computed at once; further requests wait for a permit, so many
/// open pages cannot multiply the polling of every instance without bound.
pub const MAX_CONCURRENT_READS: usize = 4;

/// Settings of the dashboard role.
#[derive(Clone, Debug)]
pub struct DashboardSettings {
    /// Where the pages and the JSON API answer (default
    /// [`Self::DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// Redis, where the registry is.
    pub redis: RedisConfig,
    /// Key layout (prefix) of the registry.
    pub keys: Keys,
    /// Limits of the listener.
    pub stack: StackConfig,
}

impl DashboardSettings {
    /// Port of the dashboard unless configured otherwise.
    pub const DEFAULT_PORT: u16 = 8000;
    /// The listener unless configured otherwise: every interface.
    pub const DEFAULT_LISTEN: SocketAddr = every_interface(Self::DEFAULT_PORT);

    /// Defaults for the given Redis.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            redis,
            keys: Keys::default(),
            stack: StackConfig::default(),
        }
    }
}

/// A built dashboard: listener bound, Redis supervisor started.
pub struct Dashboard {
    listeners: RoleListeners,
    redis: Redis,
    state: Arc<state::Reader>,
}

impl Dashboard {
    /// Binds the listener (port 0 allowed) and starts connecting to Redis.
    ///
    /// # Errors
    /// The listener cannot be bound, or the Redis settings are unusable.
    pub async fn build(settings: DashboardSettings) -> Result<Self, StartError> {
        let mut listeners = RoleListeners::bind(settings.listen, None, settings.stack).await?;
        let redis = Redis::start(settings.redis, listeners.tasks())?;
        listeners.announce("dashboard", &redis, &settings.keys);
        let state = Arc::new(state::Reader::new(redis.clone(), settings.keys)?);
        // Keeps the list of instances current between page views, so a
        // Redis that goes down leaves the dashboard the list it had; ends
        // when the role stops its tasks.
        let reader = state.clone();
        let tasks = listeners.tasks().clone();
        listeners.tasks().spawn(async move {
            loop {
                reader.instances().await;
                tokio::select! {
                    () = tasks.stopping() => return,
                    () = tokio::time::sleep(REGISTRY_REFRESH) => {}
                }
            }
        });
        Ok(Self {
            listeners,
            redis,
            state,
        })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.listeners.port()
    }

    /// The Redis handle.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The pages, the JSON API, `/health*` and `/logs`.
    pub fn router(&self) -> Router {
        let health: Health = Arc::new(DashboardHealth {
            redis: self.redis.clone(),
        });
        let pages = Router::new()
            .route("/", get(overview))
            .route("/api/dashboard/state", get(state_json))
            .with_state(self.state.clone());
        self.listeners.single_listener_router(health, pages)
    }

    /// Serves until `shutdown` is cancelled, then stops its tasks.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let router = self.router();
        self.listeners
            .serve_until("dashboard", router, async move {
                shutdown.cancelled().await;
            })
            .await
    }
}

/// The dashboard is ready whenever it can answer: showing that Redis or an
/// instance is down is its job.
struct DashboardHealth {
    redis: Redis,
}

impl HealthCheck for DashboardHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        Vec::new()
    }

    fn detail(&self) -> serde_json::Value {
        serde_json::json!({ "role": "dashboard", "redis": self.redis.health() })
    }
}

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    state: DashboardState,
}

async fn overview(State(reader): State<Arc<state::Reader>>) -> Result<Response, ApiError> {
    let page = OverviewPage {
        state: reader.read().await,
    };
    let html = page.render().map_err(|err| {
        tracing::error!(error = %err, "the overview page did not render");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            "the page could not be rendered",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn state_json(State(reader): State<Arc<state::Reader>>) -> Response {
    axum::Json(reader.read().await).into_response()
}
