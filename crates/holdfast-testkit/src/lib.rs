//! Test support: real redis-server processes on free ports, started roles, fixtures.
//!
//! This crate is for tests only (a `dev-dependency`); nothing shipped
//! depends on it, so its helpers panic with a clear message instead of
//! returning errors.
//!
//! Tests never use a Redis on port 6379. That one may be a developer's own,
//! holding data a test must not read or flush, and one shared server would
//! make tests that run in parallel see each other's keys, or break each
//! other when one of them kills it on purpose. Instead [`redis`] and
//! [`redis_with_aof`] start a private `redis-server` per test (a
//! [`LocalRedis`]) on a port the kernel hands out, in its own temporary
//! directory; dropping it kills the server and removes the directory.
//!
//! The parts, each one copy for every test binary of the workspace:
//! - here: the private redis-server, a ready supervised handle onto it
//!   ([`ready_redis`], or both together as a [`TestRedis`]),
//!   [`quick_redis_config`], [`test_prefix`], [`wait_until`] and
//!   [`join_all`];
//! - [`net`]: free ports and a server that never answers;
//! - `db` (feature `db`): a fresh database per test and engine, and
//!   [`on_every_engine!`](crate::on_every_engine) to run a test on each;
//! - `http` (feature `http`): problem details, JSON bodies and headers;
//! - `prometheus` (feature `prometheus`): samples of Prometheus text and
//!   the check with Python's reference parser;
//! - [`sentinel`]: a primary, a replica and three sentinels;
//! - [`cluster`]: a Redis Cluster of three primaries with a replica each;
//! - `tls` (feature `tls`): a CA, server and client certificates made for
//!   one test, for TLS redis-servers;
//! - `roles` (feature `roles`): the api, ingress, worker and exporter roles
//!   started in-process on free ports.
//!
//! Tests are silent unless `TEST_LOG` is set: see [`init_tracing`].

#![warn(missing_docs)]

pub mod cluster;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod http;
pub mod net;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "roles")]
pub mod roles;
pub mod sentinel;
#[cfg(feature = "tls")]
pub mod tls;

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use holdfast_redis::{Redis, RedisConfig};
use tokio_util::sync::CancellationToken;

pub use holdfast_redis::local::{LocalRedis, LocalRedisOptions, LocalTls};
pub use net::free_port;

/// How often [`wait_until`] checks its condition.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long [`ready_redis`] waits for its first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis configuration for `url` that notices a lost connection within
/// 200 ms and reconnects within 200 ms, so tests that kill and restart
/// Redis do not wait on the production backoff.
pub fn quick_redis_config(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.health_interval = Duration::from_millis(200);
    cfg.reconnect_backoff =
        holdfast_resilience::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg
}

/// Starts a private in-memory `redis-server` on a free port.
///
/// # Panics
/// If the server cannot be started, for example because `redis-server` is
/// not installed; the message says why.
pub async fn redis() -> LocalRedis {
    start_or_panic(LocalRedisOptions::default()).await
}

/// Starts a private `redis-server` with `appendonly yes` and
/// `appendfsync always`, so that every acknowledged write survives
/// [`LocalRedis::kill9`] followed by [`LocalRedis::restart`].
///
/// # Panics
/// If the server cannot be started; the message says why.
pub async fn redis_with_aof() -> LocalRedis {
    start_or_panic(LocalRedisOptions {
        aof: true,
        appendfsync: Some("always".to_owned()),
        ..LocalRedisOptions::default()
    })
    .await
}

async fn start_or_panic(options: LocalRedisOptions) -> LocalRedis {
    match LocalRedis::start(options).await {
        Ok(redis) => redis,
        Err(error) => panic!("could not start a local redis-server for this test: {error}"),
    }
}

/// A supervised handle on `config`'s server that is connected already; it
/// stops when `shutdown` is cancelled.
///
/// # Panics
/// If the configuration is refused, or the handle is not connected within
/// 5 seconds.
pub async fn ready_redis(config: RedisConfig, shutdown: CancellationToken) -> Redis {
    let redis = Redis::start(config, shutdown).expect("redis client starts");
    assert!(redis.wait_ready(READY_TIMEOUT).await, "redis not ready");
    redis
}

/// A private redis-server, a supervised handle that is connected to it and
/// a key prefix of the test's own: the way most tests of a Redis client
/// begin. Dropping it cancels `shutdown` (stopping the handle and whatever
/// the test started on a child of it), then kills the server.
pub struct TestRedis {
    /// The server, for killing, restarting or reconfiguring it.
    pub server: LocalRedis,
    /// The supervised handle onto it.
    pub redis: Redis,
    /// Stops the handle; cancelled when this is dropped.
    pub shutdown: CancellationToken,
    /// A key prefix of this test's own ([`test_prefix`]).
    pub prefix: String,
}

impl TestRedis {
    /// A ready handle onto `server`, configured by `config` from the
    /// server's URL: `RedisConfig::new` for the production settings,
    /// [`quick_redis_config`] for tests that kill and restart the server.
    /// Installs the test tracing first ([`init_tracing`]).
    ///
    /// # Panics
    /// As [`ready_redis`] does.
    pub async fn connect(server: LocalRedis, config: impl FnOnce(String) -> RedisConfig) -> Self {
        init_tracing();
        let shutdown = CancellationToken::new();
        let redis = ready_redis(config(server.url()), shutdown.clone()).await;
        TestRedis {
            server,
            redis,
            shutdown,
            prefix: test_prefix(),
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A key prefix of a test's own (`t` and a random number), so that tests
/// sharing a server, or a second instance of a role, never see each
/// other's keys by accident.
pub fn test_prefix() -> String {
    format!("t{}", fastrand::u32(..))
}

/// Installs a tracing subscriber that writes through the test harness
/// (so output is captured per test), once per process, and only when the
/// `TEST_LOG` environment variable is set. The filter comes from `RUST_LOG`
/// and defaults to `info`. Without `TEST_LOG` tests stay silent.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be global (set by the test
        // itself); that one wins and this is not an error.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Polls `condition` every 20 ms until it returns `true`.
///
/// Works with paused tokio time too: the sleeps then advance the clock.
///
/// # Panics
/// If `condition` is still `false` after `timeout`; the message names
/// `what` was being waited for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(WAIT_POLL_INTERVAL).await;
    }
}

/// Runs `futures` side by side, each as a task of its own, and returns
/// their outputs in order, like `futures::future::join_all` without the
/// dependency.
///
/// # Panics
/// When one of them panics (after the ones before it have finished).
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("task panicked"));
    }
    outputs
}
