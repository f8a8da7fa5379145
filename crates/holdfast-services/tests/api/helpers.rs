//! Starts the api in-process on free ports, against a private redis-server
//! and its own SQLite file.

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_redis::RedisConfig;
use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_testkit::LocalRedis;
use tokio_util::sync::CancellationToken;

/// Users and products seeded into each test's database: enough for the
/// tests, quick to insert.
pub const SEED_USERS: u32 = 50;
pub const SEED_PRODUCTS: u32 = 20;

pub struct TestApi {
    pub server: LocalRedis,
    pub base: String,
    pub admin: String,
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

pub fn fast_redis(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.health_interval = Duration::from_millis(200);
    cfg.reconnect_backoff =
        holdfast_resilience::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg
}

/// The api on a fresh redis-server and a fresh SQLite file.
pub async fn spawn_api(configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    holdfast_testkit::init_tracing();
    let server = holdfast_testkit::redis().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut settings = ApiSettings::new(fast_redis(server.url()));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.database_url = DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db"));
    settings.cache.prefix = format!("t{}", fastrand::u32(..));
    settings.seed_users = SEED_USERS;
    settings.seed_products = SEED_PRODUCTS;
    configure(&mut settings);
    let api = Api::build(settings).await.expect("api builds");
    let base = format!("http://127.0.0.1:{}", api.port());
    let admin = format!("http://127.0.0.1:{}", api.admin_port().unwrap());
    if api.redis().is_enabled() {
        assert!(api.redis().wait_ready(Duration::from_secs(5)).await);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(shutdown.clone()));
    TestApi {
        server,
        base,
        admin,
        client: reqwest::Client::new(),
        shutdown,
        _dir: dir,
    }
}

impl TestApi {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent")
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
