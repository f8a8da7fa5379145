//! Shared set-up: a private redis-server, a supervised handle onto it, sink
//! settings with short intervals, and recording into a registry of the
//! test's own. Reading the text back is `holdfast_testkit::prometheus`.

use std::time::Duration;

use holdfast_redis::RedisConfig;
use holdfast_telemetry::SinkRegistry;
use holdfast_telemetry::sink::SinkConfig;
use holdfast_testkit::{LocalRedis, TestRedis};

/// A ready handle on the production settings onto `server`, a
/// redis-server of this test.
pub async fn connect(server: LocalRedis) -> TestRedis {
    TestRedis::connect(server, RedisConfig::new).await
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
