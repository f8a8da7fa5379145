//! The exporter role on a free port against a private redis-server, with
//! a Redis handle of the test's own for arranging what it reports.

use std::time::Duration;

use holdfast_core::Keys;
use holdfast_redis::Redis;
use holdfast_redis::redis::{self, Value};
use holdfast_services::exporter::{Exporter, ExporterSettings};
use tokio_util::sync::CancellationToken;

use super::worker::{self, RunningWorker};
use super::{local_url, loopback, test_prefix};
use crate::LocalRedis;

/// How long the exporter may take to reach Redis at start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running exporter and what its test needs to arrange data and scrape.
pub struct TestExporter {
    /// The private redis-server, for killing it.
    pub server: LocalRedis,
    /// The key layout of this test (its own prefix).
    pub keys: Keys,
    /// Base URL of the exporter's listener.
    pub base: String,
    /// A client of the test's own, for arranging data with raw commands.
    pub redis: Redis,
    /// A client for the test's requests.
    pub client: reqwest::Client,
    /// Stops the exporter, the test's Redis handle and any worker.
    pub shutdown: CancellationToken,
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An exporter on a fresh redis-server, discovering topics unless
/// `configure` names them.
///
/// # Panics
/// If the exporter cannot be built or does not reach Redis within 5 s.
pub async fn spawn_exporter(configure: impl FnOnce(&mut ExporterSettings)) -> TestExporter {
    crate::init_tracing();
    let server = crate::redis().await;
    let keys = Keys::new(test_prefix());
    let shutdown = CancellationToken::new();
    let mut settings = ExporterSettings::new(crate::quick_redis_config(server.url()));
    settings.listen = loopback();
    settings.keys = keys.clone();
    configure(&mut settings);
    let exporter = Exporter::build(settings).await.expect("exporter binds");
    let base = local_url(exporter.port());
    assert!(exporter.redis().wait_ready(READY_TIMEOUT).await);
    // Serves until the test cancels `shutdown` (or drops the handle).
    tokio::spawn(exporter.run_until_stopped(shutdown.clone()));
    let redis = crate::ready_redis(
        crate::quick_redis_config(server.url()),
        shutdown.child_token(),
    )
    .await;
    TestExporter {
        server,
        keys,
        base,
        redis,
        client: reqwest::Client::new(),
        shutdown,
    }
}

impl TestExporter {
    /// Runs a raw command (`args[0]` with the rest as arguments) for
    /// arranging data.
    ///
    /// # Panics
    /// If the command fails.
    pub async fn cmd(&self, args: &[&str]) -> Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        self.redis.cmd(&cmd).await.expect("arranging command runs")
    }

    /// `GET /metrics`: status, content type and body.
    ///
    /// # Panics
    /// If the scrape gets no answer.
    pub async fn scrape(&self) -> (u16, String, String) {
        let resp = crate::http::get(&self.client, &format!("{}/metrics", self.base)).await;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (
            status,
            content_type,
            resp.text().await.expect("scrape body"),
        )
    }

    /// Starts the seed weather worker on `topic` with its admin listener,
    /// sharing the exporter's Redis and prefix.
    pub async fn spawn_worker(&self, topic: &str) -> RunningWorker {
        let settings = worker::settings(self.server.url(), self.keys.clone(), topic);
        worker::spawn(settings, self.shutdown.child_token()).await
    }
}
