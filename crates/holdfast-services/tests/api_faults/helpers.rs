//! Starts the api in-process on free ports, against a private redis-server
//! and its own SQLite file, for the fault tests.
//!
//! Unlike the helpers of `tests/api`, the Redis URL is chosen by the test
//! (it may carry a wrong password) and the api is not required to reach
//! Redis before the test starts.

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_redis::RedisConfig;
use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_testkit::LocalRedis;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Users and products seeded into each test's database.
pub const SEED_USERS: u32 = 20;
pub const SEED_PRODUCTS: u32 = 50;

pub struct TestApi {
    pub server: LocalRedis,
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    /// Holds the SQLite file; removed when the test ends.
    _dir: tempfile::TempDir,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A Redis configuration that notices failures and reconnects quickly.
pub fn fast_redis(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.health_interval = Duration::from_millis(200);
    cfg.reconnect_backoff =
        holdfast_resilience::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg
}

/// The api on `server`, reaching it through `redis_url`, with a fresh
/// SQLite file. Waits for Redis to be ready only when `wait_for_redis`.
pub async fn spawn_api_on(
    server: LocalRedis,
    redis_url: String,
    wait_for_redis: bool,
    configure: impl FnOnce(&mut ApiSettings),
) -> TestApi {
    holdfast_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut settings = ApiSettings::new(fast_redis(redis_url));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.database_url = DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db"));
    settings.cache.prefix = format!("t{}", fastrand::u32(..));
    settings.seed_users = SEED_USERS;
    settings.seed_products = SEED_PRODUCTS;
    configure(&mut settings);
    let api = Api::build(settings).await.expect("api builds");
    let base = format!("http://127.0.0.1:{}", api.port());
    if wait_for_redis {
        assert!(api.redis().wait_ready(Duration::from_secs(5)).await);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(shutdown.clone()));
    TestApi {
        server,
        base,
        client: reqwest::Client::new(),
        shutdown,
        _dir: dir,
    }
}

/// The api on a fresh redis-server (no password), once Redis is ready.
pub async fn spawn_api(configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    let server = holdfast_testkit::redis().await;
    let url = server.url();
    spawn_api_on(server, url, true, configure).await
}

impl TestApi {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }

    /// The `/health` report.
    pub async fn health(&self) -> Value {
        self.get("/health").await.json().await.expect("health JSON")
    }

    /// Status, X-Cache and JSON body of a GET.
    pub async fn read(&self, path: &str) -> (u16, String, Value) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        let cache = x_cache(&resp);
        (status, cache, resp.json().await.expect("JSON body"))
    }
}

/// The `X-Cache` header of a response.
pub fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}
