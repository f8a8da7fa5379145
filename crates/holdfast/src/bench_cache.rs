//! `holdfast bench cache`: product reads per second and their latency
//! through the read-through cache, next to the database alone.
//!
//! Four paths read the same entity (products, ids drawn at random over the
//! seeded range, every one read once beforehand so that hits are hits):
//!
//! - `http_hit`: `GET /api/products/{id}` with reqwest (keep-alive) against
//!   an in-process [`Api`] whose cache is warm; a read that is not a 200
//!   with `X-Cache: HIT` is an error.
//! - `direct_hit`: the same reads through a [`ReadThrough`] called directly,
//!   with a loader on a [`Store`] over the same SQLite file; an answer that
//!   is not from the cache is an error.
//! - `db_only`: the database alone. This is a second api with Redis
//!   switched off (`redis.enabled = false`, what `REDIS_ENABLED=false`
//!   does) read over HTTP, rather than the store called directly, so that
//!   it differs from `http_hit` in the cache and nothing else; a read that
//!   is not a 200 with `X-Cache: BYPASS` is an error.
//! - `outage`: the warm api of `http_hit` after its Redis was killed
//!   (SIGKILL to the benchmark's own redis-server), so every read bypasses
//!   the cache; with `--redis-url` that server is not ours to kill, and a
//!   third api pointed at a closed loopback port stands in. Only a non-200
//!   is an error.
//!
//! Each path gets a short warm-up whose figures are dropped, then runs for
//! the given duration with `concurrency` reads in flight. Everything runs
//! in this process on loopback: the client, the api and, unless given a
//! URL, Redis all share the machine's cores. The SQLite file lives in a
//! scratch directory removed at the end.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use holdfast_cache::{L1Config, LoadError, ReadThrough, Source};
use holdfast_redis::{ConnState, Redis, RedisConfig};
use holdfast_services::api::{Api, ApiSettings, CacheConfig, DatabaseUrl, StoreOptions, X_CACHE};
use holdfast_store::{Product, Store};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bench::{connect, drive, print_report, redis_for_bench};

/// Products seeded, and the range of ids read.
const PRODUCTS: u32 = 1_000;

/// Users seeded: the benchmark reads none, and fewer rows make a faster
/// start.
const USERS: u32 = 10;

/// Longest wait for the api to notice that its Redis was killed.
const OUTAGE_NOTICE_LIMIT: Duration = Duration::from_secs(5);

/// What to measure, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct CacheBench {
    /// Reads in flight.
    pub concurrency: usize,
    /// Length of each measured run.
    pub duration: Duration,
    /// Whether the cached paths put an in-process L1 in front of Redis.
    pub l1: bool,
}

impl CacheBench {
    /// The warm-up before each measured run: a tenth of it, 0.2 s to 1 s.
    fn warm_up(&self) -> Duration {
        (self.duration / 10).clamp(Duration::from_millis(200), Duration::from_secs(1))
    }
}

/// Figures of one measured path.
#[derive(Serialize, Debug)]
pub struct ReadFigures {
    reads_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl ReadFigures {
    fn from_run((hist, ok, errors, elapsed): (Histogram<u64>, u64, u64, Duration)) -> Self {
        Self {
            reads_per_sec: ok as f64 / elapsed.as_secs_f64(),
            p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
            errors,
        }
    }
}

/// The four paths; the JSON form is what scripts read.
#[derive(Serialize, Debug)]
pub struct CacheReport {
    http_hit: ReadFigures,
    direct_hit: ReadFigures,
    db_only: ReadFigures,
    outage: ReadFigures,
}

/// Runs the benchmark and prints a table, or one JSON object.
pub async fn run(bench: CacheBench, redis_url: Option<String>, json: bool) -> Result<()> {
    let (server, url) = redis_for_bench(redis_url).await?;
    let scratch = ScratchDir::create()?;
    let report = measure(bench, server, &url, &scratch).await;
    drop(scratch);
    print_report(&report?, json, |report| {
        println!(
            "path        reads/s    p50 ms   p99 ms   errors   ({} in flight, {:?} each{})",
            bench.concurrency,
            bench.duration,
            if bench.l1 { ", L1 on" } else { "" }
        );
        for (name, f) in [
            ("http_hit", &report.http_hit),
            ("direct_hit", &report.direct_hit),
            ("db_only", &report.db_only),
            ("outage", &report.outage),
        ] {
            println!(
                "{name:<10} {:>9.0} {:>9.3} {:>8.3} {:>8}",
                f.reads_per_sec, f.p50_ms, f.p99_ms, f.errors
            );
        }
    })
}

async fn measure(
    bench: CacheBench,
    mut server: Option<holdfast_redis::local::LocalRedis>,
    url: &str,
    scratch: &ScratchDir,
) -> Result<CacheReport> {
    let database_url = DatabaseUrl::sqlite_file(&scratch.0.join("bench.db"));
    // A prefix of our own, so a shared Redis given by URL keeps its keys.
    let prefix = format!("bench{}", fastrand::u32(..));
    let mut cache = CacheConfig {
        prefix,
        ..CacheConfig::default()
    };
    if bench.l1 {
        cache.l1 = Some(L1Config::default());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .build()?;

    // The cached api migrates and seeds the file the other paths read.
    let cached_api = RunningApi::start(RedisConfig::new(url), &database_url, &cache).await?;
    anyhow::ensure!(
        cached_api.redis.wait_ready(Duration::from_secs(5)).await,
        "the api's redis at {url} is not answering"
    );
    let warmed = warm_over_http(&client, &cached_api.base).await?;
    anyhow::ensure!(
        warmed == u64::from(PRODUCTS),
        "only {warmed} of {PRODUCTS} products could be read to warm the cache"
    );
    let http_hit = bench_http(bench, &client, &cached_api.base, Some("HIT")).await;

    let direct_hit = bench_direct(bench, url, &database_url, &cache).await?;

    // No L1 either: with it, the database-only api would answer from memory.
    let database_only = CacheConfig {
        l1: None,
        ..cache.clone()
    };
    let db_api = RunningApi::start(RedisConfig::disabled(), &database_url, &database_only).await?;
    let db_only = bench_http(bench, &client, &db_api.base, Some("BYPASS")).await;
    db_api.stop().await;

    let outage = match server.as_mut() {
        Some(server) => {
            server.kill9().await;
            let noticed = tokio::time::timeout(OUTAGE_NOTICE_LIMIT, async {
                while cached_api.redis.state() == ConnState::Ready {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            anyhow::ensure!(
                noticed.is_ok(),
                "the api did not notice that redis was killed within {OUTAGE_NOTICE_LIMIT:?}"
            );
            bench_outage(bench, &client, &cached_api.base).await
        }
        None => {
            let closed = closed_loopback_port()?;
            let dead_api = RunningApi::start(
                RedisConfig::new(format!("redis://127.0.0.1:{closed}/")),
                &database_url,
                &cache,
            )
            .await?;
            let figures = bench_outage(bench, &client, &dead_api.base).await;
            dead_api.stop().await;
            figures
        }
    };
    cached_api.stop().await;
    Ok(CacheReport {
        http_hit,
        direct_hit,
        db_only,
        outage,
    })
}

/// Reads every seeded product once over HTTP, so the cache holds them all;
/// returns how many answered 200.
async fn warm_over_http(client: &reqwest::Client, base: &str) -> Result<u64> {
    let mut ok = 0;
    for id in 1..=PRODUCTS {
        let resp = client
            .get(format!("{base}/api/products/{id}"))
            .send()
            .await
            .context("warming the cache over HTTP")?;
        ok += u64::from(resp.status() == reqwest::StatusCode::OK);
    }
    Ok(ok)
}

/// Reads of random products over HTTP; a read counts when it is a 200 and,
/// if `expected` is given, its `X-Cache` is that.
async fn bench_http(
    bench: CacheBench,
    client: &reqwest::Client,
    base: &str,
    expected: Option<&'static str>,
) -> ReadFigures {
    let op = {
        let client = client.clone();
        let base = base.to_owned();
        move || {
            let request = client.get(format!(
                "{base}/api/products/{}",
                fastrand::u32(1..=PRODUCTS)
            ));
            async move {
                let Ok(resp) = request.send().await else {
                    return false;
                };
                let as_expected = resp.status() == reqwest::StatusCode::OK
                    && expected.is_none_or(|want| {
                        resp.headers().get(X_CACHE).is_some_and(|got| got == want)
                    });
                resp.bytes().await.is_ok() && as_expected
            }
        }
    };
    let op = Arc::new(op);
    let warm = op.clone();
    drive(bench.concurrency, bench.warm_up(), move || warm()).await;
    ReadFigures::from_run(drive(bench.concurrency, bench.duration, move || op()).await)
}

/// The outage path: [`bench_http`] without a header check (a non-200 is the
/// only error), warning if any read was not a bypass, which would mean the
/// cache was still reachable and the figures are not an outage's.
async fn bench_outage(bench: CacheBench, client: &reqwest::Client, base: &str) -> ReadFigures {
    let figures = bench_http(bench, client, base, None).await;
    if bench.l1 {
        // L1 entries outlive Redis for their TTL: hits are expected.
        return figures;
    }
    let not_bypass = count_not_bypass(client, base).await;
    if not_bypass > 0 {
        tracing::warn!(
            not_bypass,
            "reads during the outage were not bypasses: is redis really down?"
        );
    }
    figures
}

/// A sample of reads after the outage run: how many did not say BYPASS.
async fn count_not_bypass(client: &reqwest::Client, base: &str) -> u64 {
    let mut not_bypass = 0;
    for id in 1..=100 {
        let bypass = match client.get(format!("{base}/api/products/{id}")).send().await {
            Ok(resp) => resp.headers().get(X_CACHE).is_some_and(|v| v == "BYPASS"),
            Err(_) => false,
        };
        not_bypass += u64::from(!bypass);
    }
    not_bypass
}

/// Cache hits through a [`ReadThrough`] called in process, with a loader
/// on its own [`Store`] over the api's SQLite file.
async fn bench_direct(
    bench: CacheBench,
    url: &str,
    database_url: &DatabaseUrl,
    cache: &CacheConfig,
) -> Result<ReadFigures> {
    // Ends the Redis supervisor and the invalidation listener on return.
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let redis = connect(url, &shutdown).await?;
    let store = Store::open(database_url, StoreOptions::default())
        .await
        .context("opening the benchmark's database")?;
    let products = ReadThrough::new(redis, "products", cache.clone());
    let listener = products.start(shutdown.clone());

    let read = {
        let products = products.clone();
        let store = store.clone();
        move |id: u32| {
            let products = products.clone();
            let store = store.clone();
            async move {
                let load = move || async move {
                    store
                        .product(i64::from(id))
                        .await
                        .map_err(|err| LoadError::retryable(err.to_string()))
                };
                products.get::<Product, _, _>(&id.to_string(), load).await
            }
        }
    };
    // Warm: whatever the api left under the same keys is a hit already,
    // the rest is loaded now.
    for id in 1..=PRODUCTS {
        read(id)
            .await
            .with_context(|| format!("warming product {id} through the cache"))?;
    }
    let op = Arc::new(move || {
        let answer = read(fastrand::u32(1..=PRODUCTS));
        async move {
            matches!(answer.await, Ok(cached)
                if cached.source == Source::Cache && !cached.bypass && cached.value.is_some())
        }
    });
    let warm = op.clone();
    drive(bench.concurrency, bench.warm_up(), move || warm()).await;
    let figures =
        ReadFigures::from_run(drive(bench.concurrency, bench.duration, move || op()).await);
    shutdown.cancel();
    let _ = listener.await;
    store.close().await;
    Ok(figures)
}

/// An api serving in this process on a free loopback port.
struct RunningApi {
    base: String,
    /// The api's own Redis handle, to see when it notices an outage.
    redis: Redis,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningApi {
    async fn start(
        redis: RedisConfig,
        database_url: &DatabaseUrl,
        cache: &CacheConfig,
    ) -> Result<Self> {
        let mut settings = ApiSettings::new(redis);
        settings.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        settings.admin_listen = None;
        settings.database_url = database_url.clone();
        settings.products_db_delay = Duration::ZERO;
        settings.cache = cache.clone();
        settings.seed_users = USERS;
        settings.seed_products = PRODUCTS;
        let api = Api::build(settings)
            .await
            .context("could not start the api for the benchmark")?;
        let base = format!("http://127.0.0.1:{}", api.port());
        let redis = api.redis().clone();
        let stop = CancellationToken::new();
        // Serves until `stop` is cancelled by `RunningApi::stop`.
        let task = tokio::spawn(api.run_until_stopped(stop.clone()));
        Ok(Self {
            base,
            redis,
            stop,
            task,
        })
    }

    /// Stops serving and waits until the api has closed its database.
    async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "the benchmark's api stopped with an error")
            }
            Err(err) => tracing::warn!(error = %err, "the benchmark's api task failed"),
        }
    }
}

/// A loopback port nothing listens on: bound, read, released. Another
/// process could take it in between, which on a benchmark machine is not
/// worth guarding against beyond a warning in the outage figures.
fn closed_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("could not find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A directory of our own under the system's temporary directory, removed
/// (with the SQLite file and its journal) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "holdfast-bench-cache-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %err, "could not remove the scratch directory");
        }
    }
}
