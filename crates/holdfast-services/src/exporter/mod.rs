//! The exporter role: one Prometheus endpoint for what lives in Redis.
//!
//! Every scrape of `GET /metrics` is computed fresh from Redis, in a few
//! round trips:
//! 1. one pipeline with `INFO` (Redis essentials) and the first `SCAN` page
//!    over the request streams (topic discovery; never `KEYS`), followed by
//!    the remaining `SCAN` pages, if any;
//! 2. one pipeline with, per topic partition, `XLEN` of the request and
//!    dead-letter streams, `XINFO GROUPS` and the `XPENDING` summary; its
//!    errors are per command (`ignore_errors`), so a key of the wrong type
//!    or a stream without a group costs that figure only;
//! 3. alongside 2, the metric aggregates every role flushes into Redis,
//!    rendered by the telemetry crate.
//!
//! When Redis does not answer, the scrape still answers 200 at once with
//! `holdfast_redis_up 0` and nothing else: figures that could not be read
//! are missing rather than zero, so no alert mistakes an outage for an
//! empty queue. The role is ready whenever it can answer a scrape, since a
//! scrape is how Redis being down gets reported.
//!
//! The parts:
//! - [`scrape`]: [`Scraper`], one exposition per scrape: the pipelines, topic
//!   discovery and the flushed aggregates; usable on its own (benchmarks);
//! - `info`: Redis essentials read from `INFO`;
//! - `topics`: the figures of each topic partition;
//! - `families`: how those figures are written, each with its help text;
//! - this module: [`ExporterSettings`] and [`Exporter`], which binds the
//!   listener and serves `/metrics` with `/health*` through the shared
//!   middleware stack.

mod families;
pub(crate) mod info;
pub mod scrape;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_core::{Keys, Topic};
use holdfast_redis::{ConnState, Redis, RedisConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use scrape::Scraper;

use crate::health::{Health, HealthCheck};
use crate::http::StackConfig;
use crate::role::RoleListeners;
use crate::start::StartError;

/// Default port of `holdfast exporter` ([`ExporterSettings::DEFAULT_PORT`]).
pub const DEFAULT_PORT: u16 = ExporterSettings::DEFAULT_PORT;

/// The content type of Prometheus text exposition format 0.0.4.
pub use holdfast_telemetry::exposition::CONTENT_TYPE;

/// Settings of the exporter role.
#[derive(Clone, Debug)]
pub struct ExporterSettings {
    /// Listener for `/metrics` and `/health*` (default `0.0.0.0:9121`).
    pub listen: SocketAddr,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Key layout (prefix) of the aggregates and the topic streams.
    pub keys: Keys,
    /// Topics to report; `None` discovers them with `SCAN`.
    pub topics: Option<Vec<Topic>>,
    /// Partitions of each topic in `topics` (discovery finds them itself).
    pub partitions: u16,
    /// Limits of the listener.
    pub stack: StackConfig,
}

impl ExporterSettings {
    /// Port of `/metrics` unless configured otherwise: the port Prometheus
    /// users know from the common Redis exporter.
    pub const DEFAULT_PORT: u16 = 9121;
    /// The listener unless configured otherwise: every interface.
    pub const DEFAULT_LISTEN: SocketAddr = crate::http::every_interface(Self::DEFAULT_PORT);

    /// Defaults: port 9121 on every interface, prefix `hf`, topics discovered.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            redis,
            keys: Keys::default(),
            topics: None,
            partitions: Topic::DEFAULT_PARTITIONS,
            stack: StackConfig::default(),
        }
    }
}

async fn metrics(State(scraper): State<Arc<Scraper>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        scraper.render().await,
    )
        .into_response()
}

struct ExporterHealth {
    redis: Redis,
    topics: Option<Vec<Topic>>,
}

impl HealthCheck for ExporterHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        // Ready even when Redis is down: a scrape then reports
        // `holdfast_redis_up 0`, which is the point.
        Vec::new()
    }

    fn detail(&self) -> serde_json::Value {
        let degraded = self.redis.state() != ConnState::Ready;
        json!({
            "role": "exporter",
            "redis": self.redis.health(),
            "degraded": degraded.then_some("redis is not ready: scrapes report holdfast_redis_up 0"),
            "topics": match &self.topics {
                Some(topics) => json!(topics.iter().map(Topic::as_str).collect::<Vec<_>>()),
                None => json!("discovered"),
            },
        })
    }
}

/// A built exporter: listener bound, Redis supervisor started.
pub struct Exporter {
    /// No admin listener; its one task is the Redis supervisor.
    listeners: RoleListeners,
    redis: Redis,
    scraper: Arc<Scraper>,
    health: Health,
}

impl Exporter {
    /// Binds the listener (port 0 allowed) and starts connecting to Redis.
    pub async fn build(settings: ExporterSettings) -> Result<Self, StartError> {
        let mut listeners = RoleListeners::bind(settings.listen, None, settings.stack).await?;
        let redis = Redis::start(settings.redis, listeners.tasks())?;
        listeners.announce("exporter", &redis, &settings.keys);
        let scraper = Arc::new(Scraper::new(
            redis.clone(),
            settings.keys,
            settings.topics.clone(),
            settings.partitions,
        ));
        let health: Health = Arc::new(ExporterHealth {
            redis: redis.clone(),
            topics: settings.topics,
        });
        Ok(Self {
            listeners,
            redis,
            scraper,
            health,
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

    /// `/metrics`, `/health*` and `/logs` behind the shared middleware stack.
    pub fn router(&self) -> Router {
        let metrics = Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.scraper.clone());
        self.listeners
            .single_listener_router(self.health.clone(), metrics)
    }

    /// Serves until `shutdown` is cancelled, lets scrapes in progress finish,
    /// then stops the Redis supervisor.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let router = self.router();
        self.listeners
            .serve_until("exporter", router, async move {
                shutdown.cancelled().await;
                tracing::info!("exporter shutting down");
            })
            .await
    }
}
