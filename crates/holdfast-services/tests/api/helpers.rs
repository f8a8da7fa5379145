//! Starts the api in-process on free ports, against a private redis-server
//! and a database of its own: a fresh SQLite file ([`spawn_api`]), or a
//! fresh database on any engine ([`on_engine`], through
//! `holdfast_testkit::db`). The api migrates and seeds it in `Api::build`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_testkit::LocalRedis;
use holdfast_testkit::db::{self, Engine};
use tokio_util::sync::CancellationToken;

/// The cache's Redis deadline in the tests run on every engine.
const ENGINE_TEST_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a stopped api may take to drain and close its database pool
/// before the test gives up on it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Cancelled when the api has stopped and closed its database pool.
    stopped: CancellationToken,
    /// Holds the SQLite file of [`spawn_api`]; removed when the test ends.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The api on a fresh redis-server and a fresh SQLite file.
pub async fn spawn_api(configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db"));
    let mut app = spawn_api_on(url, configure).await;
    app._dir = Some(dir);
    app
}

/// The api on a fresh redis-server and the database at `database_url`.
pub async fn spawn_api_on(
    database_url: DatabaseUrl,
    configure: impl FnOnce(&mut ApiSettings),
) -> TestApi {
    holdfast_testkit::init_tracing();
    let server = holdfast_testkit::redis().await;
    let mut settings = ApiSettings::new(holdfast_testkit::quick_redis_config(server.url()));
    settings.listen = loopback();
    settings.admin_listen = Some(loopback());
    settings.database_url = database_url;
    settings.cache.prefix = format!("t{}", fastrand::u32(..));
    settings.seed_users = SEED_USERS;
    settings.seed_products = SEED_PRODUCTS;
    // Tests expect cold caches: a read of the database is a MISS first.
    settings.warm_products = 0;
    configure(&mut settings);
    let api = Api::build(settings).await.expect("api builds");
    let base = format!("http://127.0.0.1:{}", api.port());
    let admin = format!("http://127.0.0.1:{}", api.admin_port().unwrap());
    if api.redis().is_enabled() {
        assert!(api.redis().wait_ready(Duration::from_secs(5)).await);
    }
    let shutdown = CancellationToken::new();
    let stopped = CancellationToken::new();
    // Serves until the test cancels `shutdown` (or drops the `TestApi`),
    // then says so through `stopped`, so the database is dropped only after
    // the api has closed its pool.
    tokio::spawn({
        let shutdown = shutdown.clone();
        let stopped = stopped.clone();
        async move {
            let _stopped = stopped.drop_guard();
            let _ = api.run_until_stopped(shutdown).await;
        }
    });
    TestApi {
        server,
        base,
        admin,
        client: reqwest::Client::new(),
        shutdown,
        stopped,
        _dir: None,
    }
}

/// Runs `test` against an api started on a fresh database of `engine`,
/// migrated and seeded by the api itself. After the test the api is
/// stopped and the database dropped, also when the test panics. Returns
/// at once (after a note) when the engine is not configured.
pub async fn on_engine<F, Fut>(engine: Engine, test: F)
where
    F: FnOnce(TestApi) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    db::run_on_empty(engine, move |url| async move {
        let app = spawn_api_on(url, |settings| {
            // These tests are about what the database answers, not about a
            // slow Redis: a deadline far above the 50 ms default keeps a
            // busy machine (tests of three engines side by side) from
            // turning an expected MISS or HIT into a BYPASS.
            settings.cache.redis_timeout = ENGINE_TEST_REDIS_TIMEOUT;
        })
        .await;
        let stopped = app.stopped.clone();
        // The test owns the api; dropping it at the end cancels `shutdown`.
        test(app).await;
        tokio::time::timeout(STOP_TIMEOUT, stopped.cancelled())
            .await
            .expect("the api stops within 10 s of the test's end");
    })
    .await;
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
