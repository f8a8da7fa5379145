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
//! Live data goes out over server-sent events (`GET
//! /api/dashboard/events`): one task reads the state once a second while
//! anyone listens and renders it once; every open page gets the same
//! rendered fragment, so a hundred open pages cost what one does.
//!
//! Where the dashboard controls a stack (`holdfast up`, or
//! `--control-url` with a token) the chaos actions pass through
//! [`control`] to the stack's control API.
//!
//! Streams, cache, users, loop tests and logs views are the next parts of
//! the dashboard issue; this module is where they go.

pub mod charts;
pub mod control;
mod live;
mod scrape;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use holdfast_core::Keys;
use holdfast_redis::{Redis, RedisConfig};
use tokio_util::sync::CancellationToken;

pub use state::{DashboardState, InstanceView, RedisChange};

use self::control::ControlClient;

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
    /// The stack's control API (`http://127.0.0.1:PORT`), for the chaos
    /// actions; needs `token`.
    pub control_url: Option<String>,
    /// The token mutating requests need.
    pub token: Option<String>,
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
            control_url: None,
            token: None,
        }
    }
}

/// A built dashboard: listener bound, Redis supervisor started.
pub struct Dashboard {
    listeners: RoleListeners,
    redis: Redis,
    state: Arc<state::Reader>,
    live: live::Live,
    control: Option<Arc<ControlClient>>,
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
        let control = match (&settings.control_url, settings.token) {
            (Some(url), Some(token)) => Some(Arc::new(
                ControlClient::new(url, token).map_err(StartError::HttpClient)?,
            )),
            _ => None,
        };
        let state = Arc::new(state::Reader::new(
            redis.clone(),
            settings.keys,
            control.clone(),
        )?);
        let live = live::Live::start(state.clone(), listeners.tasks());
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
            live,
            control,
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
            .route(
                "/",
                get(overview).with_state((self.state.clone(), self.live.charts.clone())),
            )
            .route("/api/dashboard/state", get(state_json))
            .with_state(self.state.clone())
            .route(
                "/api/dashboard/events",
                get(live::events).with_state(self.live.clone()),
            )
            .route(
                "/api/dashboard/chaos/{action}",
                post(control::chaos).with_state(self.control.clone()),
            );
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
    charts: ChartsFragment,
}

/// The charts, which server-sent events replace.
#[derive(Template)]
#[template(path = "charts.html")]
pub(crate) struct ChartsFragment {
    pub(crate) last: Option<charts::Tick>,
    pub(crate) requests: String,
    pub(crate) cache: String,
    pub(crate) topics: String,
}

impl ChartsFragment {
    /// The charts of `ticks`, with the actions and events of `stack`.
    pub(crate) fn new(
        ticks: &[charts::Tick],
        stack: Option<&holdfast_chaos::stack_control::StackView>,
    ) -> Self {
        use holdfast_chaos::report_page::render_live_svg;
        let [requests, cache, topics] = charts::reports(ticks, stack);
        let span = format!("{} points, one a second", ticks.len());
        Self {
            last: ticks.last().cloned(),
            requests: render_live_svg(
                &requests,
                "hf-requests",
                span.clone(),
                "answered/s · errors/s",
            ),
            cache: render_live_svg(&cache, "hf-cache", span.clone(), "reads/s"),
            topics: render_live_svg(&topics, "hf-topics", span, "entries"),
        }
    }

    /// Milliseconds for people: `12.3 ms`, or `–` when there is none.
    fn ms(&self, value: &f64) -> String {
        if value.is_finite() {
            format!("{value:.1} ms")
        } else {
            "–".to_owned()
        }
    }
}

/// The live part of the overview, which server-sent events replace.
#[derive(Template)]
#[template(path = "live.html")]
pub(crate) struct LiveFragment<'a> {
    pub(crate) state: &'a DashboardState,
}

async fn overview(
    State((reader, charts)): State<(Arc<state::Reader>, Arc<charts::Charts>)>,
) -> Result<Response, ApiError> {
    let state = reader.read().await;
    let charts = ChartsFragment::new(&charts.ticks(), state.stack.as_ref());
    let page = OverviewPage { state, charts };
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
