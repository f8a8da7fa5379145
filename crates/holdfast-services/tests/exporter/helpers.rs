//! Starts the exporter in-process on a free port against a private
//! redis-server, and reads its output with a real Prometheus parser.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use holdfast_core::{Keys, Topic};
use holdfast_redis::redis::{self, Value};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_services::exporter::{Exporter, ExporterSettings};
use holdfast_services::worker::{WorkerRole, WorkerSettings};
use holdfast_streams::WorkerConfig;
use holdfast_testkit::LocalRedis;
use tokio_util::sync::CancellationToken;

pub struct TestExporter {
    pub server: LocalRedis,
    pub keys: Keys,
    pub base: String,
    /// A client of the test's own, for arranging data with raw commands.
    pub redis: Redis,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn fast_redis(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.health_interval = Duration::from_millis(200);
    cfg
}

/// An exporter on a fresh redis-server (discovering topics unless
/// `configure` names them).
pub async fn spawn_exporter(configure: impl FnOnce(&mut ExporterSettings)) -> TestExporter {
    holdfast_testkit::init_tracing();
    let server = holdfast_testkit::redis().await;
    let keys = Keys::new(format!("t{}", fastrand::u32(..)));
    let shutdown = CancellationToken::new();
    let mut settings = ExporterSettings::new(fast_redis(server.url()));
    settings.listen = loopback();
    settings.keys = keys.clone();
    configure(&mut settings);
    let exporter = Exporter::build(settings).await.expect("exporter binds");
    let base = format!("http://127.0.0.1:{}", exporter.port());
    assert!(exporter.redis().wait_ready(Duration::from_secs(5)).await);
    tokio::spawn(exporter.run_until_stopped(shutdown.clone()));
    let redis = Redis::start(fast_redis(server.url()), shutdown.child_token()).unwrap();
    assert!(redis.wait_ready(Duration::from_secs(5)).await);
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
    /// Runs a raw command for arranging data.
    pub async fn cmd(&self, args: &[&str]) -> Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        self.redis.cmd(&cmd).await.expect("arranging command runs")
    }

    /// `GET /metrics`: status, content type and body.
    pub async fn scrape(&self) -> (u16, String, String) {
        let resp = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, content_type, resp.text().await.unwrap())
    }

    /// A seed weather worker on `topic` with its admin listener, sharing the
    /// exporter's Redis and prefix; returns the admin base URL.
    pub async fn spawn_worker(&self, topic: &str) -> String {
        let mut worker = WorkerConfig::new(self.keys.clone(), Topic::parse(topic).unwrap());
        worker.block = Duration::from_millis(200);
        let role = WorkerRole::build(WorkerSettings {
            admin_listen: loopback(),
            redis: fast_redis(self.server.url()),
            worker,
            processing_time: Duration::ZERO,
        })
        .await
        .unwrap();
        let admin = format!("http://127.0.0.1:{}", role.admin_port());
        tokio::spawn(role.run_until_stopped(self.shutdown.child_token()));
        admin
    }
}

/// The sample `line` (name, labels, value) as written, or its value.
pub fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

/// One sample as the Python parser saw it.
#[derive(Debug, serde::Deserialize)]
pub struct ParsedSample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: String,
}

const PARSE: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": repr(s.value)})
print(json.dumps(samples))
"#;

/// Parses `text` with `prometheus_client`'s parser and returns its samples;
/// `None` (with a note) when the parser is not installed, except under
/// `CI=true`, where a missing parser fails the test.
pub fn parse_with_prometheus_client(text: &str) -> Option<Vec<ParsedSample>> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let missing = |why: &str| {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the Prometheus text parser is required under CI=true: {why}");
        }
        eprintln!("note: Prometheus parser check skipped: {why} (pip install prometheus_client)");
        None
    };
    let mut child = match child {
        Ok(child) => child,
        Err(err) => return missing(&format!("python3 did not start: {err}")),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    match output.status.code() {
        Some(0) => Some(serde_json::from_slice(&output.stdout).expect("parser output is JSON")),
        Some(3) => missing("prometheus_client is not importable"),
        _ => panic!(
            "the Prometheus text parser rejected the exposition: {}\n--- exposition ---\n{text}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
