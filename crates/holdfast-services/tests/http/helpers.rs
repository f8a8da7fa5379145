//! Starts real roles in-process on free ports against a private redis-server.

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_core::{Keys, Topic};
use holdfast_redis::RedisConfig;
use holdfast_services::ingress::{Ingress, IngressSettings};
use holdfast_services::worker::{WorkerRole, WorkerSettings};
use holdfast_streams::{Handler, WorkerConfig, WorkerStatus};
use holdfast_testkit::LocalRedis;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub server: LocalRedis,
    pub keys: Keys,
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn fast_redis(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.health_interval = Duration::from_millis(200);
    cfg
}

/// An ingress on a fresh redis-server; no workers yet.
pub async fn spawn_app(configure: impl FnOnce(&mut IngressSettings)) -> TestApp {
    holdfast_testkit::init_tracing();
    let server = holdfast_testkit::redis().await;
    let keys = Keys::new(format!("t{}", fastrand::u32(..)));
    let mut settings = IngressSettings::new(fast_redis(server.url()));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.keys = keys.clone();
    configure(&mut settings);
    let ingress = Ingress::build(settings).await.expect("ingress binds");
    let base = format!("http://127.0.0.1:{}", ingress.port());
    let admin = format!("http://127.0.0.1:{}", ingress.admin_port().unwrap());
    if ingress.redis().is_enabled() {
        assert!(ingress.redis().wait_ready(Duration::from_secs(5)).await);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(ingress.run_until_stopped(shutdown.clone()));
    TestApp {
        server,
        keys,
        base,
        admin,
        client: reqwest::Client::new(),
        shutdown,
    }
}

pub struct RunningWorker {
    pub admin: String,
    pub status: WorkerStatus,
}

impl TestApp {
    pub fn worker_settings(&self) -> WorkerSettings {
        let mut worker = WorkerConfig::new(self.keys.clone(), Topic::parse("weather").unwrap());
        worker.claim_timeout = Duration::from_millis(500);
        worker.block = Duration::from_millis(200);
        WorkerSettings {
            admin_listen: loopback(),
            redis: fast_redis(self.server.url()),
            worker,
            processing_time: Duration::ZERO,
        }
    }

    /// The seed weather worker.
    pub async fn spawn_worker(&self) -> RunningWorker {
        let role = WorkerRole::build(self.worker_settings()).await.unwrap();
        self.run(role)
    }

    /// A worker running `handler`.
    pub async fn spawn_worker_with<H: Handler>(
        &self,
        handler: H,
        configure: impl FnOnce(&mut WorkerSettings),
    ) -> RunningWorker {
        let mut settings = self.worker_settings();
        configure(&mut settings);
        let role = WorkerRole::build_with(settings, handler).await.unwrap();
        self.run(role)
    }

    fn run<H: Handler>(&self, role: WorkerRole<H>) -> RunningWorker {
        let admin = format!("http://127.0.0.1:{}", role.admin_port());
        let status = role.status();
        tokio::spawn(role.run_until_stopped(self.shutdown.child_token()));
        RunningWorker { admin, status }
    }

    pub async fn forecast(&self, body: &str, timeout_ms: Option<u64>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/WeatherForecast/city", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(ms) = timeout_ms {
            req = req.header("x-timeout-ms", ms.to_string());
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.expect("request sent")
    }
}

pub const NEW_YORK: &str = r#"{"city": "New York", "location": "Downtown"}"#;
