//! The worker role: a stream worker plus an admin listener.
//!
//! Readiness is honest: not ready while Redis is not, while draining, and
//! while the topic has a backlog but this worker has consumed nothing for
//! `stall_after` (a wedged worker that an orchestrator should restart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use holdfast_redis::{ConnState, Redis, RedisConfig};
use holdfast_streams::{Handler, Worker, WorkerConfig, WorkerStatus};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::{HealthCheck, admin_router};
use crate::http::serve;
use crate::weather::{EffectLedger, WeatherHandler};

/// Settings of the worker role.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Admin listener for `/health*` and `/metrics` (default `0.0.0.0:5010`).
    pub admin_listen: SocketAddr,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Stream worker settings (topic, concurrency, consumer name, timeouts).
    pub worker: WorkerConfig,
    /// Simulated processing time of the weather handler.
    pub processing_time: Duration,
}

struct WorkerHealth {
    redis: Redis,
    status: WorkerStatus,
    topic: String,
    consumer: String,
}

impl HealthCheck for WorkerHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let state = self.redis.state();
        if state != ConnState::Ready {
            reasons.push(format!("redis is {}", state.as_str()));
        }
        if self.status.draining() {
            reasons.push("shutting down".into());
        }
        if self.status.stalled() {
            reasons.push("backlog waiting but nothing consumed recently".into());
        }
        reasons
    }

    fn detail(&self) -> serde_json::Value {
        json!({
            "role": "worker",
            "topic": self.topic,
            "consumer": self.consumer,
            "redis": self.redis.health(),
            "terminals": {
                "capacity": self.status.capacity(),
                "active": self.status.active(),
            },
            "handled": self.status.handled(),
            "backlog": self.status.backlog(),
            "last_consumed_unix_ms": self.status.last_consumed_unix_ms(),
            "stalled": self.status.stalled(),
            "draining": self.status.draining(),
        })
    }
}

/// A built worker role: admin listener bound, Redis supervisor started.
pub struct WorkerRole<H> {
    admin: TcpListener,
    redis: Redis,
    worker: Worker<H>,
    health: Arc<WorkerHealth>,
    background: CancellationToken,
}

impl WorkerRole<WeatherHandler> {
    /// The weather worker of the seed demo.
    /// Requests with an idempotency key record their effect once per key
    /// in an [`EffectLedger`], which `holdfast chaos` reads to count
    /// duplicated effects.
    pub async fn build(settings: WorkerSettings) -> std::io::Result<Self> {
        let processing_time = settings.processing_time;
        let consumer = settings.worker.consumer.clone();
        let keys = settings.worker.keys.clone();
        let topic = settings.worker.topic.clone();
        Self::build_making(settings, move |redis| WeatherHandler {
            processing_time,
            worker: consumer,
            effects: Some(EffectLedger::new(redis.clone(), &keys, &topic)),
        })
        .await
    }
}

impl<H: Handler> WorkerRole<H> {
    /// A worker role running `handler`.
    pub async fn build_with(settings: WorkerSettings, handler: H) -> std::io::Result<Self> {
        Self::build_making(settings, move |_| handler).await
    }

    /// A worker role running the handler `make` builds on the role's Redis.
    async fn build_making(
        settings: WorkerSettings,
        make: impl FnOnce(&Redis) -> H,
    ) -> std::io::Result<Self> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let admin = TcpListener::bind(settings.admin_listen).await?;
        let background = CancellationToken::new();
        let redis = Redis::start(settings.redis.clone(), background.clone())
            .map_err(std::io::Error::other)?;
        let handler = make(&redis);
        let worker = Worker::new(redis.clone(), settings.worker.clone(), handler);
        let health = Arc::new(WorkerHealth {
            redis: redis.clone(),
            status: worker.status(),
            topic: settings.worker.topic.to_string(),
            consumer: settings.worker.consumer.clone(),
        });
        Ok(Self {
            admin,
            redis,
            worker,
            health,
            background,
        })
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Live figures of the worker.
    pub fn status(&self) -> WorkerStatus {
        self.worker.status()
    }

    /// The Redis handle.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Serves until `shutdown` is cancelled, then drains the worker (requests
    /// in progress finish and are acknowledged) and stops.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let stop = self.background.clone();
        let health: Arc<dyn HealthCheck> = self.health;
        // The admin listener stays up through the drain so probes see it.
        let admin = tokio::spawn(serve(self.admin, admin_router(health), async move {
            stop.cancelled().await
        }));
        self.worker.run(shutdown).await;
        self.background.cancel();
        admin.await.map_err(std::io::Error::other)?
    }
}
