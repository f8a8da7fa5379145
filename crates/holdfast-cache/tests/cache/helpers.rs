//! Shared set-up: a private redis-server, a supervised handle, caches with
//! short TTLs so expiry and recovery run in test time, and loaders that
//! count their calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use holdfast_cache::{CacheConfig, L1Config, LoadError, ReadThrough};
use holdfast_redis::Redis;
use holdfast_testkit::{LocalRedis, TestRedis};
use tokio_util::sync::CancellationToken;

/// A private redis-server with a handle that reconnects quickly, so that
/// "after restart" tests do not wait on the production backoff.
pub async fn env() -> TestRedis {
    env_on(holdfast_testkit::redis().await).await
}

/// The same on a given server (one with AOF, say).
pub async fn env_on(server: LocalRedis) -> TestRedis {
    TestRedis::connect(server, holdfast_testkit::quick_redis_config).await
}

/// A second, independent handle on the same server, as another instance
/// of the api would have. It reconnects quickly too.
pub async fn handle(server: &LocalRedis, shutdown: &CancellationToken) -> Redis {
    let cfg = holdfast_testkit::quick_redis_config(server.url());
    holdfast_testkit::ready_redis(cfg, shutdown.clone()).await
}

/// What the cache tests build on a test's Redis: configurations under its
/// prefix, and caches of widgets on its handle.
pub trait CacheEnv {
    /// Test defaults: long TTL, 100 ms soft timeout.
    fn config(&self) -> CacheConfig;

    /// The test defaults with a TTL of `ttl` and no jitter, so that a key
    /// goes stale at a known time.
    fn config_with_ttl(&self, ttl: Duration) -> CacheConfig;

    /// The test defaults with an L1 of 100 entries that keeps each for
    /// `ttl`.
    fn config_with_l1(&self, ttl: Duration) -> CacheConfig;

    fn cache(&self, cfg: CacheConfig) -> ReadThrough;

    /// A cache with `cfg` whose key `key` was just loaded with `value`,
    /// and the loader that counted that load.
    async fn cache_holding(&self, cfg: CacheConfig, key: &str, value: u32)
    -> (ReadThrough, Loader);
}

impl CacheEnv for TestRedis {
    fn config(&self) -> CacheConfig {
        CacheConfig {
            prefix: self.prefix.clone(),
            soft_timeout: Duration::from_millis(100),
            ..CacheConfig::default()
        }
    }

    fn config_with_ttl(&self, ttl: Duration) -> CacheConfig {
        CacheConfig {
            ttl,
            ttl_jitter: 0.0,
            ..self.config()
        }
    }

    fn config_with_l1(&self, ttl: Duration) -> CacheConfig {
        CacheConfig {
            l1: Some(L1Config { capacity: 100, ttl }),
            ..self.config()
        }
    }

    fn cache(&self, cfg: CacheConfig) -> ReadThrough {
        ReadThrough::new(self.redis.clone(), "widgets", cfg)
    }

    async fn cache_holding(
        &self,
        cfg: CacheConfig,
        key: &str,
        value: u32,
    ) -> (ReadThrough, Loader) {
        let cache = self.cache(cfg);
        let loader = Loader::new();
        cache
            .get(key, loader.value(value))
            .await
            .expect("the first load fills the cache");
        (cache, loader)
    }
}

/// What a test loader returns, boxed so all loaders of one `T` share a type.
pub type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<Option<T>, LoadError>> + Send>>;

/// A loader that counts calls and answers with what `answer` returns.
#[derive(Clone)]
pub struct Loader {
    calls: Arc<AtomicUsize>,
}

impl Loader {
    pub fn new() -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A loader call that waits `delay`, then answers `answer`.
    pub fn with<T: Send + 'static>(
        &self,
        delay: Duration,
        answer: Result<Option<T>, LoadError>,
    ) -> impl FnOnce() -> LoadFuture<T> + use<T> {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                answer
            })
        }
    }

    /// A loader call that answers `value` at once.
    pub fn value<T: Send + 'static>(&self, value: T) -> impl FnOnce() -> LoadFuture<T> + use<T> {
        self.with(Duration::ZERO, Ok(Some(value)))
    }

    /// A loader call that fails at once, as a database that is down.
    pub fn failing<T: Send + 'static>(&self) -> impl FnOnce() -> LoadFuture<T> + use<T> {
        self.with(
            Duration::ZERO,
            Err(LoadError::retryable("database is down")),
        )
    }
}
