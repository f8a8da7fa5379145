//! Shared set-up: a private redis-server, a supervised handle onto it, and
//! the Prometheus text parser of the Python client.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use holdfast_redis::{Redis, RedisConfig};
use holdfast_telemetry::SinkRegistry;
use holdfast_telemetry::sink::SinkConfig;
use holdfast_testkit::LocalRedis;
use tokio_util::sync::CancellationToken;

/// A redis-server of this test and a ready handle onto it.
pub struct TestRedis {
    pub server: LocalRedis,
    pub redis: Redis,
    pub shutdown: CancellationToken,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn connect(server: LocalRedis) -> TestRedis {
    holdfast_testkit::init_tracing();
    let shutdown = CancellationToken::new();
    let redis = Redis::start(RedisConfig::new(server.url()), shutdown.clone()).expect("client");
    assert!(
        redis.wait_ready(Duration::from_secs(5)).await,
        "redis not ready"
    );
    TestRedis {
        server,
        redis,
        shutdown,
    }
}

/// A sink configuration with short intervals for tests.
pub fn fast_config(instance: &str) -> SinkConfig {
    SinkConfig {
        prefix: "t".to_owned(),
        interval: Duration::from_millis(100),
        ttl: Duration::from_secs(60),
        gauge_ttl: Some(Duration::from_millis(600)),
        instance: instance.to_owned(),
    }
}

/// Runs `f` with `registry` as the recorder of this thread.
pub fn record<T>(registry: &SinkRegistry, f: impl FnOnce() -> T) -> T {
    metrics::with_local_recorder(registry, f)
}

/// The value of the sample line `series` (name and labels exactly as
/// rendered) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "help": family.documentation,
                    "name": s.name, "labels": s.labels, "value": repr(s.value)})
print(json.dumps(out))
"#;

/// Parses `text` with Python's `prometheus_client` parser and returns its
/// samples, or `None` (with a note) when the module is not installed. In
/// CI (`CI=true`) a missing parser fails the test instead.
pub fn parse_with_prometheus_client(text: &str) -> Option<Vec<serde_json::Value>> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(PARSER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return missing_parser(&format!("python3 not runnable: {error}")),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python");
    let output = child.wait_with_output().expect("python output");
    if output.status.code() == Some(3) {
        return missing_parser("python module prometheus_client not importable");
    }
    assert!(
        output.status.success(),
        "prometheus_client rejected the text: {}\n--- text ---\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("parser output is JSON"))
}

fn missing_parser(why: &str) -> Option<Vec<serde_json::Value>> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}; CI requires it (pip install prometheus_client)");
    }
    eprintln!("note: skipping the Prometheus parser check: {why}");
    None
}
