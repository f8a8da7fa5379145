//! The dashboard role: the whole stack live in a browser, rendered on the
//! server from askama templates, with a JSON API beside the pages (in its
//! OpenAPI document, Swagger UI at `/swagger-ui/`).
//!
//! | page | module | what it shows |
//! |---|---|---|
//! | `/` | [`state`], [`live`], [`charts`], [`control`] | every instance (health, Redis state and history, breaker, terminals), the stack's processes, actions and events, live charts, the chaos buttons |
//! | `/streams` | [`streams`] | topics by partition, consumers, the dead-letter browser |
//! | `/cache` | [`views`] | per entity: hit ratio, stale, fallbacks, loader latency, warm-up |
//! | `/users` | [`views`] | a user search, each result with where it came from |
//! | `/loop-tests` | [`loops`] | bounded loads at the stack with live progress |
//! | `/stack-logs` | [`views`] | recent lines of every instance, by level and instance (`/logs` is the dashboard's own, as on every role) |
//!
//! Instances come from the registry in Redis ([`crate::registry`]); each
//! one's admin `/health` is then read directly, all at once, each bounded
//! by [`HEALTH_TIMEOUT`]. With Redis down the dashboard keeps the last list
//! it read and still polls those instances, so it shows what is up while
//! the registry is not. At most [`MAX_CONCURRENT_READS`] states are
//! computed at once.
//!
//! Live data goes out over server-sent events (`GET
//! /api/dashboard/events`): one task reads the state once a second while
//! anyone listens and renders it once; every open page gets the same
//! rendered fragment, so many open pages cost what one does.
//!
//! Reading needs nothing; every action (chaos, dead-letter replay and
//! purge, loop tests) passes the [`guard`]. Chaos actions also need a stack
//! to control: `holdfast up`'s, or one given by `--control-url`.

pub mod charts;
pub mod control;
pub mod guard;
mod live;
pub mod loops;
mod scrape;
mod state;
pub mod streams;
pub mod views;

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
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
#[derive(Clone)]
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
    /// Partitions of every topic (for the streams view).
    pub partitions: u16,
}

// Hand-written so that the token never reaches a log.
impl std::fmt::Debug for DashboardSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSettings")
            .field("listen", &self.listen)
            .field("redis", &self.redis)
            .field("keys", &self.keys)
            .field("control_url", &self.control_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
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
            partitions: holdfast_core::Topic::DEFAULT_PARTITIONS,
        }
    }
}

/// A built dashboard: listener bound, Redis supervisor started.
pub struct Dashboard {
    listeners: RoleListeners,
    redis: Redis,
    shared: AppState,
    live: live::Live,
}

/// What every handler of the dashboard shares.
pub(crate) struct Shared {
    reader: Arc<state::Reader>,
    charts: Arc<charts::Charts>,
    guard: guard::Guard,
    control: Option<Arc<ControlClient>>,
    admin: holdfast_streams::Admin,
    loops: loops::LoopTests,
}

/// The handlers' state.
pub(crate) type AppState = Arc<Shared>;

impl Dashboard {
    /// Binds the listener (port 0 allowed) and starts connecting to Redis.
    ///
    /// # Errors
    /// The listener cannot be bound, or the Redis settings are unusable.
    pub async fn build(settings: DashboardSettings) -> Result<Self, StartError> {
        let mut listeners = RoleListeners::bind(settings.listen, None, settings.stack).await?;
        let redis = Redis::start(settings.redis, listeners.tasks())?;
        listeners.announce("dashboard", &redis, &settings.keys);
        let control = match (&settings.control_url, &settings.token) {
            (Some(url), Some(token)) => Some(Arc::new(
                ControlClient::new(url, token.clone()).map_err(StartError::HttpClient)?,
            )),
            _ => None,
        };
        let admin =
            holdfast_streams::Admin::new(redis.clone(), settings.keys.clone(), settings.partitions);
        let charts = Arc::new(charts::Charts::default());
        let state = Arc::new(state::Reader::new(
            redis.clone(),
            settings.keys,
            control.clone(),
            charts.clone(),
        )?);
        let live = live::Live::start(state.clone(), charts, listeners.tasks());
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
        let shared = Arc::new(Shared {
            reader: state,
            charts: live.charts.clone(),
            guard: guard::Guard::new(settings.token),
            control,
            admin,
            loops: loops::LoopTests::new(listeners.tasks().clone()),
        });
        Ok(Self {
            listeners,
            redis,
            shared,
            live,
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
            live: self.live.clone(),
        });
        let (api, openapi) = OpenApiRouter::with_openapi(DashboardDoc::openapi())
            .routes(routes!(state_json))
            .routes(routes!(live::events))
            .routes(routes!(control::chaos))
            .routes(routes!(streams::topics_json))
            .routes(routes!(streams::dead_letters_json))
            .routes(routes!(streams::dead_letter_json))
            .routes(routes!(streams::replay))
            .routes(routes!(streams::purge))
            .routes(routes!(views::logs_json))
            .routes(routes!(views::users_json))
            .routes(routes!(views::cache_json))
            .routes(routes!(loops::start, loops::list))
            .routes(routes!(loops::one))
            .routes(routes!(loops::cancel))
            .with_state(self.shared.clone())
            .split_for_parts();
        let pages = Router::new()
            .route("/", get(overview))
            .route("/streams", get(streams::page))
            .route(
                "/streams/{topic}/dead-letters/{id}",
                get(streams::letter_page),
            )
            .route("/cache", get(views::cache_page))
            .route("/users", get(views::users_page))
            .route("/loop-tests", get(loops::page))
            .route("/stack-logs", get(views::logs_page))
            .with_state(self.shared.clone())
            .merge(api)
            .layer(axum::Extension(self.live.clone()))
            .merge(crate::http::swagger_ui(openapi));
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
    live: live::Live,
}

impl HealthCheck for DashboardHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        Vec::new()
    }

    fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "role": "dashboard",
            "redis": self.redis.health(),
            "event_streams": self.live.subscribers(),
        })
    }
}

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
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

/// The stack's processes and events, which server-sent events replace.
#[derive(Template)]
#[template(path = "stack.html")]
pub(crate) struct StackFragment<'a> {
    pub(crate) state: &'a DashboardState,
}

/// The live part of the overview, which server-sent events replace.
#[derive(Template)]
#[template(path = "live.html")]
pub(crate) struct LiveFragment<'a> {
    pub(crate) state: &'a DashboardState,
}

/// Renders a page, or says it could not.
pub(crate) fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a dashboard page did not render");
            ApiError::internal("the page could not be rendered").into_response()
        }
    }
}

async fn overview(State(shared): State<AppState>) -> Response {
    let state = shared.reader.read().await;
    let charts = ChartsFragment::new(&shared.charts.ticks(), state.stack.as_ref());
    html(&OverviewPage {
        nav: "overview",
        state,
        charts,
    })
}

/// The state of the stack: every instance with its health, the dashboard's
/// Redis, and (where the dashboard controls a stack) its processes,
/// actions and events.
#[utoipa::path(
    get,
    path = "/api/dashboard/state",
    tag = "overview",
    responses((status = 200, description = "The state, read now", body = DashboardState))
)]
async fn state_json(State(shared): State<AppState>) -> Response {
    axum::Json(shared.reader.read().await).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "holdfast dashboard",
        description = "The dashboard's JSON API: the state of the stack, live events, streams and dead letters, cache, users, logs, loop tests and chaos actions. Reading needs nothing; actions need the token as `Authorization: Bearer TOKEN`."
    ),
    components(schemas(holdfast_core::Problem)),
    modifiers(&TokenScheme)
)]
struct DashboardDoc;

/// Declares the bearer token the actions need.
struct TokenScheme;

impl utoipa::Modify for TokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
