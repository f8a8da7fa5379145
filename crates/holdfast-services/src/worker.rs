//! The worker role: a stream worker plus an admin listener.
//!
//! Readiness is honest: not ready while Redis is not, while draining, and
//! while the topic has a backlog but this worker has consumed nothing for
//! `stall_after` (a wedged worker that an orchestrator should restart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use holdfast_core::{Keys, Topic};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_resilience::Tasks;
use holdfast_streams::{Handler, Worker, WorkerConfig, WorkerStatus};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::{HealthCheck, admin_router, redis_not_ready};
use crate::http::{loopback_only, serve_admin, stop_tasks};
use crate::registry::{self, Instance, Registration};
use crate::start::{StartError, bind};
use crate::weather::{EffectLedger, WeatherHandler};

/// Settings of the worker role.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Admin listener for `/health*` and `/metrics` (default
    /// [`Self::DEFAULT_ADMIN_LISTEN`]).
    pub admin_listen: SocketAddr,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Stream worker settings (topic, concurrency, consumer name, timeouts).
    pub worker: WorkerConfig,
    /// Simulated processing time of the weather handler (default
    /// [`Self::DEFAULT_PROCESSING_TIME`]).
    pub processing_time: Duration,
}

impl WorkerSettings {
    /// Port of the admin listener unless configured otherwise.
    pub const DEFAULT_ADMIN_PORT: u16 = 5010;
    /// The admin listener unless configured otherwise: loopback only, so
    /// metrics, logs and health details are not offered to the network
    /// unless asked for (`0.0.0.0:PORT` where a kubelet or Prometheus
    /// must reach them).
    pub const DEFAULT_ADMIN_LISTEN: SocketAddr = loopback_only(Self::DEFAULT_ADMIN_PORT);
    /// The topic served: the weather demo's.
    pub const DEFAULT_TOPIC: &str = crate::weather::TOPIC;
    /// Simulated processing time of the weather handler.
    pub const DEFAULT_PROCESSING_TIME: Duration = Duration::from_millis(50);

    /// Defaults for a worker of `topic` under `keys` on the given Redis.
    pub fn new(redis: RedisConfig, keys: Keys, topic: Topic) -> Self {
        // The stream worker's own defaults (concurrency, claim timeout,
        // deliveries, drain, stall) are `WorkerConfig::DEFAULT_*`.
        Self {
            admin_listen: Self::DEFAULT_ADMIN_LISTEN,
            redis,
            worker: WorkerConfig::new(keys, topic),
            processing_time: Self::DEFAULT_PROCESSING_TIME,
        }
    }
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
        reasons.extend(redis_not_ready(&self.redis));
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
    /// The owner of the Redis supervisor and the admin listener; stopped
    /// and awaited after the drain.
    tasks: Tasks,
    /// The worker's entry in the instance registry, deleted after the drain.
    registration: Registration,
}

impl WorkerRole<WeatherHandler> {
    /// The weather demo's worker.
    /// Requests with an idempotency key record their effect once per key
    /// in an [`EffectLedger`], which `holdfast chaos` reads to count
    /// duplicated effects.
    ///
    /// # Errors
    /// The admin listener cannot be bound, or the Redis settings are
    /// unusable.
    pub async fn build(settings: WorkerSettings) -> Result<Self, StartError> {
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
    ///
    /// # Errors
    /// As [`WorkerRole::build`].
    pub async fn build_with(settings: WorkerSettings, handler: H) -> Result<Self, StartError> {
        Self::build_making(settings, move |_| handler).await
    }

    /// A worker role running the handler `make` builds on the role's Redis.
    async fn build_making(
        settings: WorkerSettings,
        make: impl FnOnce(&Redis) -> H,
    ) -> Result<Self, StartError> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let admin = bind(settings.admin_listen).await?;
        let tasks = Tasks::new();
        let redis = Redis::start(settings.redis.clone(), &tasks)?;
        let instance = Instance::new("worker", admin.local_addr().ok(), None);
        let registration = registry::register(&redis, &settings.worker.keys, instance, &tasks);
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
            tasks,
            registration,
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
        let health: Arc<dyn HealthCheck> = self.health;
        // The admin listener stays up through the drain so probes see it.
        let admin = serve_admin(self.admin, admin_router(health), &self.tasks);
        self.worker.run(shutdown).await;
        self.registration.leave().await;
        stop_tasks("worker", &self.tasks).await;
        // The admin listener is one of the tasks, so it has ended by now
        // unless it was stuck past the grace period.
        if admin.is_finished() {
            admin.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}
