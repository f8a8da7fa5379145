//! The ingress role (the HTTP front door of the weather demo) on a free
//! port against a private redis-server, with workers started on demand.

use std::time::Duration;

use holdfast_core::Keys;
use holdfast_services::ingress::{Ingress, IngressSettings};
use holdfast_services::worker::WorkerSettings;
use holdfast_streams::Handler;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::worker::{self, RunningWorker};
use super::{local_url, loopback};
use crate::{LocalRedis, test_prefix};

/// A forecast request body the weather demo's worker answers.
pub const NEW_YORK: &str = r#"{"city": "New York", "location": "Downtown"}"#;

/// How long the workers of these tests wait before they claim an entry a
/// dead consumer left behind.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the ingress may take to reach Redis at start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running ingress and what its test needs to reach it.
pub struct TestIngress {
    /// The private redis-server, for killing and restarting it.
    pub server: LocalRedis,
    /// The key layout of this test (its own prefix).
    pub keys: Keys,
    /// Base URL of the public listener.
    pub base: String,
    /// Base URL of the admin listener.
    pub admin: String,
    /// A client for the test's requests.
    pub client: reqwest::Client,
    /// Stops the ingress and every worker started through it.
    pub shutdown: CancellationToken,
}

impl Drop for TestIngress {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An ingress on a fresh redis-server, with the changes `configure` makes
/// to the test settings; no workers yet. Once it is up it has reached Redis
/// (unless Redis is disabled).
///
/// # Panics
/// If the ingress cannot be built or does not reach Redis within 5 s.
pub async fn spawn_ingress(configure: impl FnOnce(&mut IngressSettings)) -> TestIngress {
    crate::init_tracing();
    let server = crate::redis().await;
    let keys = Keys::new(test_prefix());
    let mut settings = IngressSettings::new(crate::quick_redis_config(server.url()));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.keys = keys.clone();
    configure(&mut settings);
    let ingress = Ingress::build(settings).await.expect("ingress binds");
    let base = local_url(ingress.port());
    let admin = local_url(ingress.admin_port().expect("admin listener"));
    if ingress.redis().is_enabled() {
        assert!(ingress.redis().wait_ready(READY_TIMEOUT).await);
    }
    let shutdown = CancellationToken::new();
    // Serves until the test cancels `shutdown` (or drops the handle).
    tokio::spawn(ingress.run_until_stopped(shutdown.clone()));
    TestIngress {
        server,
        keys,
        base,
        admin,
        client: reqwest::Client::new(),
        shutdown,
    }
}

impl TestIngress {
    /// Settings of a weather worker on this test's Redis and prefix.
    pub fn worker_settings(&self) -> WorkerSettings {
        let mut settings = worker::settings(self.server.url(), self.keys.clone(), "weather");
        settings.worker.claim_timeout = CLAIM_TIMEOUT;
        settings
    }

    /// Starts the weather demo's worker.
    pub async fn spawn_worker(&self) -> RunningWorker {
        worker::spawn(self.worker_settings(), self.shutdown.child_token()).await
    }

    /// Starts a worker running `handler`, with the changes `configure`
    /// makes to [`worker_settings`](Self::worker_settings).
    pub async fn spawn_worker_with<H: Handler>(
        &self,
        handler: H,
        configure: impl FnOnce(&mut WorkerSettings),
    ) -> RunningWorker {
        let mut settings = self.worker_settings();
        configure(&mut settings);
        worker::spawn_with(settings, handler, self.shutdown.child_token()).await
    }

    /// The URL of `path` on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A forecast request with `body`, asking for a deadline of
    /// `timeout_ms` when given; send it, or add headers first.
    pub fn forecast_request(&self, body: &str, timeout_ms: Option<u64>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url("/WeatherForecast/city"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(ms) = timeout_ms {
            req = req.header("x-timeout-ms", ms.to_string());
        }
        req
    }

    /// Asks for a forecast with `body` (and a deadline of `timeout_ms`).
    ///
    /// # Panics
    /// If the request gets no answer.
    pub async fn forecast(&self, body: &str, timeout_ms: Option<u64>) -> reqwest::Response {
        self.forecast_request(body, timeout_ms)
            .send()
            .await
            .expect("request sent")
    }

    /// Submits a weather job with `body`.
    ///
    /// # Panics
    /// If the request gets no answer.
    pub async fn submit_job(&self, body: &str) -> reqwest::Response {
        crate::http::send_json(
            &self.client,
            reqwest::Method::POST,
            &self.url("/jobs/weather"),
            body,
        )
        .await
    }

    /// `GET path` on the public listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        crate::http::get(&self.client, &self.url(path)).await
    }

    /// The JSON body of `GET path` on the public listener.
    pub async fn get_json(&self, path: &str) -> Value {
        crate::http::get_json(&self.client, &self.url(path)).await
    }
}
