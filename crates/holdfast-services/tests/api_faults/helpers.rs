//! Starts the api in-process on free ports, against a private redis-server
//! and its own SQLite file, for the fault tests.
//!
//! Unlike the helpers of `tests/api`, the Redis URL is chosen by the test
//! (it may carry a wrong password) and the api is not required to reach
//! Redis before the test starts.

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_store::Store;
use holdfast_testkit::LocalRedis;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Users and products seeded into each test's database.
pub const SEED_USERS: u32 = 20;
pub const SEED_PRODUCTS: u32 = 50;

pub struct TestApi {
    pub server: LocalRedis,
    pub base: String,
    /// The admin listener (`/metrics`).
    pub admin: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    /// The api's store (a clone sharing its pool: closing it takes the
    /// database away from the api).
    pub store: Store,
    /// The Redis URL and database the api was given, for a second instance.
    pub redis_url: String,
    pub database_url: DatabaseUrl,
    pub cache_prefix: String,
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
    let mut settings = ApiSettings::new(holdfast_testkit::quick_redis_config(redis_url.clone()));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.database_url = DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db"));
    settings.cache.prefix = format!("t{}", fastrand::u32(..));
    settings.seed_users = SEED_USERS;
    settings.seed_products = SEED_PRODUCTS;
    // Tests expect cold caches; the warm-up has its own test.
    settings.warm_products = 0;
    configure(&mut settings);
    let database_url = settings.database_url.clone();
    let cache_prefix = settings.cache.prefix.clone();
    let api = Api::build(settings).await.expect("api builds");
    let base = format!("http://127.0.0.1:{}", api.port());
    let admin = format!(
        "http://127.0.0.1:{}",
        api.admin_port().expect("admin listener")
    );
    if wait_for_redis {
        assert!(api.redis().wait_ready(Duration::from_secs(5)).await);
    }
    let store = api.store().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(shutdown.clone()));
    TestApi {
        server,
        base,
        admin,
        client: reqwest::Client::new(),
        shutdown,
        store,
        redis_url,
        database_url,
        cache_prefix,
        _dir: dir,
    }
}

/// A second api instance, as another process would run it.
pub struct Peer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Peer {
    /// Status, X-Cache and JSON body of a GET.
    pub async fn read(&self, path: &str) -> (u16, String, Value) {
        read_from(&self.client, &self.base, path).await
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
        read_from(&self.client, &self.base, path).await
    }

    /// A second api on the same Redis and the same database, with the same
    /// cache prefix, once its Redis is ready.
    pub async fn second_instance(&self, configure: impl FnOnce(&mut ApiSettings)) -> Peer {
        let mut settings =
            ApiSettings::new(holdfast_testkit::quick_redis_config(self.redis_url.clone()));
        settings.listen = loopback();
        settings.admin_listen = None;
        settings.database_url = self.database_url.clone();
        settings.cache.prefix = self.cache_prefix.clone();
        settings.seed_users = SEED_USERS;
        settings.seed_products = SEED_PRODUCTS;
        settings.warm_products = 0;
        configure(&mut settings);
        let api = Api::build(settings).await.expect("second api builds");
        assert!(api.redis().wait_ready(Duration::from_secs(5)).await);
        let base = format!("http://127.0.0.1:{}", api.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(api.run_until_stopped(shutdown.clone()));
        Peer {
            base,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    /// Sends `body` as JSON with `method` to `path`.
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

async fn read_from(client: &reqwest::Client, base: &str, path: &str) -> (u16, String, Value) {
    let resp = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let cache = x_cache(&resp);
    (status, cache, resp.json().await.expect("JSON body"))
}

/// The `X-Cache` header of a response.
pub fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}
