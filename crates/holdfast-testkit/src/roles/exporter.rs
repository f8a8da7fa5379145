//! The exporter role on a free port against a private redis-server, with
//! a Redis handle of the test's own for arranging what it reports.

use std::time::Duration;

use holdfast_core::Keys;
use holdfast_redis::redis::{self, Value};
use holdfast_services::exporter::{Exporter, ExporterSettings};

use super::worker::{self, RunningWorker};
use super::{local_url, loopback};
use crate::TestRedis;

/// How long the exporter may take to reach Redis at start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running exporter and what its test needs to arrange data and scrape.
pub struct TestExporter {
    /// The private redis-server (for killing it), a handle of the test's
    /// own for arranging data, and the token that stops the exporter, that
    /// handle and any worker; dropping it stops them all.
    pub redis: TestRedis,
    /// The key layout of this test (its own prefix).
    pub keys: Keys,
    /// Base URL of the exporter's listener.
    pub base: String,
    /// A client for the test's requests.
    pub client: reqwest::Client,
}

/// An exporter on a fresh redis-server, discovering topics unless
/// `configure` names them.
///
/// # Panics
/// If the exporter cannot be built or does not reach Redis within 5 s.
pub async fn spawn_exporter(configure: impl FnOnce(&mut ExporterSettings)) -> TestExporter {
    let redis = TestRedis::connect(crate::redis().await, crate::quick_redis_config).await;
    let keys = Keys::new(redis.prefix.clone());
    let mut settings = ExporterSettings::new(crate::quick_redis_config(redis.server.url()));
    settings.listen = loopback();
    settings.keys = keys.clone();
    configure(&mut settings);
    let exporter = Exporter::build(settings).await.expect("exporter binds");
    let base = local_url(exporter.port());
    assert!(exporter.redis().wait_ready(READY_TIMEOUT).await);
    // Serves until the test cancels `redis.shutdown` (or drops the handle).
    tokio::spawn(exporter.run_until_stopped(redis.shutdown.clone()));
    TestExporter {
        redis,
        keys,
        base,
        client: reqwest::Client::new(),
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
        self.redis
            .redis
            .cmd(&cmd)
            .await
            .expect("arranging command runs")
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

    /// Starts the weather demo's worker on `topic` with its admin listener,
    /// sharing the exporter's Redis and prefix.
    pub async fn spawn_worker(&self, topic: &str) -> RunningWorker {
        let settings = worker::settings(self.redis.server.url(), self.keys.clone(), topic);
        worker::spawn(settings, self.redis.shutdown.child_token()).await
    }
}
