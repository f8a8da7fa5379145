//! The api role (users, products, orders, the store demo) on free ports,
//! against a private redis-server and a database of its own: a fresh
//! SQLite file ([`spawn_api`], [`spawn_api_on`]) or a fresh database of any
//! engine ([`on_engine`], through [`crate::db`]). The api migrates and
//! seeds it itself in `Api::build`, with the test's [`Seed`].
//!
//! Caches start cold (the warm-up is off unless a test turns it on), so the
//! first read of anything is a `MISS`.

use std::future::Future;
use std::time::Duration;

use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_store::Store;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{local_url, loopback};
use crate::db::{self, Engine};
use crate::{LocalRedis, test_prefix};

/// The cache's Redis deadline in the tests run on every engine: these are
/// about what the database answers, not about a slow Redis, and a deadline
/// far above the 50 ms default keeps a busy machine (tests of three engines
/// side by side) from turning an expected MISS or HIT into a BYPASS.
const ENGINE_TEST_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the api may take to reach Redis at start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopped api may take to drain and close its database pool
/// before the test gives up on it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many users and products the api seeds into a test's database.
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    /// Users, with ids `1..=users`.
    pub users: u32,
    /// Products, with ids `1..=products`.
    pub products: u32,
}

/// A running api and what its test needs to reach it (or start another
/// instance beside it).
pub struct TestApi {
    /// The private redis-server, for killing, restarting or reconfiguring it.
    pub server: LocalRedis,
    /// Base URL of the public listener.
    pub base: String,
    /// Base URL of the admin listener (`/metrics`).
    pub admin: String,
    /// A client for the test's requests.
    pub client: reqwest::Client,
    /// Stops the api.
    pub shutdown: CancellationToken,
    /// The api's store (a clone sharing its pool: closing it takes the
    /// database away from the api).
    pub store: Store,
    /// The Redis URL the api was given (it may carry a wrong password).
    pub redis_url: String,
    /// The database the api was given.
    pub database_url: DatabaseUrl,
    /// The api's cache prefix.
    pub cache_prefix: String,
    /// What the api seeded.
    pub seed: Seed,
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

/// The settings every test api starts from: listeners on free ports,
/// `redis_url` with quick reconnects, `database_url` seeded with `seed`,
/// its own cache prefix, no warm-up.
fn test_settings(redis_url: String, database_url: DatabaseUrl, seed: Seed) -> ApiSettings {
    let mut settings = ApiSettings::new(crate::quick_redis_config(redis_url));
    settings.listen = loopback();
    settings.database_url = database_url;
    settings.cache.prefix = test_prefix();
    settings.seed_users = seed.users;
    settings.seed_products = seed.products;
    // Tests expect cold caches: a read of the database is a MISS first.
    // The warm-up has tests of its own that turn it on.
    settings.warm_products = 0;
    settings
}

/// The api on a fresh redis-server and a fresh SQLite file, with the
/// changes `configure` makes to the test settings; once it is up it has
/// reached Redis (unless Redis is disabled).
///
/// # Panics
/// If the api cannot be built or does not reach Redis within 5 s.
pub async fn spawn_api(seed: Seed, configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    let server = crate::redis().await;
    let redis_url = server.url();
    let (url, dir) = sqlite_file();
    start(server, redis_url, url, Some(dir), seed, true, configure).await
}

/// The api on `server`, reaching it through `redis_url` (which may carry a
/// wrong password, or name a server that is down), with a fresh SQLite
/// file. It is not required to reach Redis before the test starts.
///
/// # Panics
/// If the api cannot be built.
pub async fn spawn_api_on(
    server: LocalRedis,
    redis_url: String,
    seed: Seed,
    configure: impl FnOnce(&mut ApiSettings),
) -> TestApi {
    let (url, dir) = sqlite_file();
    start(server, redis_url, url, Some(dir), seed, false, configure).await
}

/// Runs `test` against an api started on a fresh database of `engine`,
/// migrated and seeded with `seed` by the api itself. After the test the
/// api is stopped and the database dropped, also when the test panics.
/// Returns at once (after a note) when the engine is not configured.
///
/// # Panics
/// When the test panics, or the api does not stop within 10 s of its end.
pub async fn on_engine<F, Fut>(engine: Engine, seed: Seed, test: F)
where
    F: FnOnce(TestApi) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    db::run_on_empty(engine, move |url| async move {
        let server = crate::redis().await;
        let redis_url = server.url();
        let app = start(server, redis_url, url, None, seed, true, |settings| {
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

/// A fresh SQLite file in a temporary directory that lives as long as the
/// returned guard.
fn sqlite_file() -> (DatabaseUrl, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    (
        DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db")),
        dir,
    )
}

async fn start(
    server: LocalRedis,
    redis_url: String,
    database_url: DatabaseUrl,
    dir: Option<tempfile::TempDir>,
    seed: Seed,
    wait_for_redis: bool,
    configure: impl FnOnce(&mut ApiSettings),
) -> TestApi {
    crate::init_tracing();
    let mut settings = test_settings(redis_url.clone(), database_url, seed);
    settings.admin_listen = Some(loopback());
    configure(&mut settings);
    let database_url = settings.database_url.clone();
    let cache_prefix = settings.cache.prefix.clone();
    let api = Api::build(settings).await.expect("api builds");
    let base = local_url(api.port());
    let admin = local_url(api.admin_port().expect("admin listener"));
    if wait_for_redis && api.redis().is_enabled() {
        assert!(api.redis().wait_ready(READY_TIMEOUT).await);
    }
    let store = api.store().clone();
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
        store,
        redis_url,
        database_url,
        cache_prefix,
        seed,
        stopped,
        _dir: dir,
    }
}

/// A second api instance on the same Redis and database, as another
/// process would run it.
pub struct Peer {
    /// Base URL of its public listener.
    pub base: String,
    /// A client for the test's requests.
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Peer {
    /// Status, `X-Cache` and JSON body of `GET path`.
    pub async fn read(&self, path: &str) -> (u16, String, Value) {
        read_from(&self.client, &format!("{}{path}", self.base)).await
    }
}

impl TestApi {
    /// The URL of `path` on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` on the public listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        crate::http::get(&self.client, &self.url(path)).await
    }

    /// The JSON body of `GET path` on the public listener.
    pub async fn get_json(&self, path: &str) -> Value {
        crate::http::get_json(&self.client, &self.url(path)).await
    }

    /// `DELETE path` on the public listener.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        let url = self.url(path);
        self.client
            .delete(&url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("DELETE {url} sent: {error}"))
    }

    /// Sends `body` as JSON with `method` to `path`.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> reqwest::Response {
        crate::http::send_json(&self.client, method, &self.url(path), body).await
    }

    /// Status, `X-Cache` and JSON body of `GET path`.
    pub async fn read(&self, path: &str) -> (u16, String, Value) {
        read_from(&self.client, &self.url(path)).await
    }

    /// The `/health` report.
    pub async fn health(&self) -> Value {
        self.get_json("/health").await
    }

    /// The admin listener's `/metrics` text.
    pub async fn admin_metrics(&self) -> String {
        crate::http::get_text(&self.client, &format!("{}/metrics", self.admin)).await
    }

    /// A second api on the same Redis and the same database, with the same
    /// cache prefix and seed and no admin listener, with the changes
    /// `configure` makes; once it has reached Redis.
    ///
    /// # Panics
    /// If it cannot be built or does not reach Redis within 5 s.
    pub async fn second_instance(&self, configure: impl FnOnce(&mut ApiSettings)) -> Peer {
        let mut settings =
            test_settings(self.redis_url.clone(), self.database_url.clone(), self.seed);
        settings.cache.prefix = self.cache_prefix.clone();
        settings.admin_listen = None;
        configure(&mut settings);
        let api = Api::build(settings).await.expect("second api builds");
        assert!(api.redis().wait_ready(READY_TIMEOUT).await);
        let base = local_url(api.port());
        let shutdown = CancellationToken::new();
        // Serves until the test drops the `Peer`.
        tokio::spawn(api.run_until_stopped(shutdown.clone()));
        Peer {
            base,
            client: reqwest::Client::new(),
            shutdown,
        }
    }
}

async fn read_from(client: &reqwest::Client, url: &str) -> (u16, String, Value) {
    let resp = crate::http::get(client, url).await;
    let status = resp.status().as_u16();
    let cache = crate::http::x_cache(&resp);
    (status, cache, resp.json().await.expect("JSON body"))
}
