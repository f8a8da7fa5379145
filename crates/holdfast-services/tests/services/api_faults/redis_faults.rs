//! The api when Redis fails: a wrong password, a kill under a load of
//! reads, Redis down at start, and a long downtime. No read fails, reads
//! around the cache take database time, and the cache is used again soon
//! after Redis is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use holdfast_services::api::ApiSettings;
use holdfast_testkit::http::x_cache;

use super::{SEED, assert_bypassed_to_the_database, products_stat, spawn_api, spawn_api_on};

/// The 99th percentile a read may take while Redis is down. With
/// `products_db_delay` at 0 such a read is one SQLite query; the bound is
/// that plus generous slack for a debug build on a busy machine. A read
/// that waited on the dead Redis would show here.
const DOWN_P99_BOUND: Duration = Duration::from_millis(100);

/// The 99th percentile of `latencies` (sorted in place).
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

/// Reads product `n % SEED.products + 1` from the api at `base`, as one
/// reader of a load does, and times it. A failed read (a status other than
/// 200, or no answer) comes back as a message naming the product.
async fn timed_product_read(
    client: &reqwest::Client,
    base: &str,
    n: usize,
) -> (Result<reqwest::Response, String>, Duration) {
    let id = n % SEED.products as usize + 1;
    let sent = Instant::now();
    let outcome = client.get(format!("{base}/api/products/{id}")).send().await;
    let took = sent.elapsed();
    let outcome = match outcome {
        Ok(resp) if resp.status() == 200 => Ok(resp),
        Ok(resp) => Err(format!("product {id}: {}", resp.status())),
        Err(err) => Err(format!("product {id}: {err}")),
    };
    (outcome, took)
}

#[tokio::test]
async fn with_a_wrong_redis_password_the_api_serves_from_the_database_and_recovers_when_it_is_fixed()
 {
    let server = holdfast_testkit::redis().await;
    server
        .config_set("requirepass", "right")
        .await
        .expect("password set");
    let wrong_url = format!("redis://:wrong@127.0.0.1:{}/", server.port());
    let app = spawn_api_on(server, wrong_url, |_| {}).await;

    holdfast_testkit::wait_until(
        Duration::from_secs(5),
        "health reports the failed authentication",
        || {
            let app = &app;
            async move {
                app.health().await["redis"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("authentication failed"))
            }
        },
    )
    .await;
    assert_bypassed_to_the_database(
        &app,
        &["/api/products/3", "/api/products/3", "/api/products/4"],
    )
    .await;
    let health = app.health().await;
    let last_error = health["redis"]["last_error"].as_str().unwrap_or("");
    assert!(
        last_error.contains("authentication failed") && !last_error.contains("wrong@"),
        "{health}"
    );
    assert_ne!(health["redis"]["state"], "ready", "{health}");
    assert_eq!(health["cache"]["products"]["state"], "degraded", "{health}");
    assert_eq!(
        health["ready"], true,
        "a wrong password is a degraded mode: {health}"
    );

    // Fix the server side: it now accepts the password the api sends.
    app.server
        .config_set("requirepass", "wrong")
        .await
        .expect("password changed");

    holdfast_testkit::wait_until(
        Duration::from_secs(5),
        "reads go through the cache again",
        || {
            let app = &app;
            async move {
                let (status, cache, _) = app.read("/api/products/3").await;
                status == 200 && (cache == "HIT" || cache == "MISS")
            }
        },
    )
    .await;
    let health = app.health().await;
    assert_eq!(health["redis"]["state"], "ready", "{health}");
    assert_eq!(health["cache"]["products"]["state"], "ready", "{health}");
    let again = app.read("/api/products/3").await;
    assert_eq!((again.0, again.1.as_str()), (200, "HIT"), "{}", again.2);
    assert_eq!(again.2["source"], "cache");
}

#[tokio::test]
async fn redis_killed_during_a_load_of_reads_fails_no_read() {
    const READERS: usize = 20;
    const RUN: Duration = Duration::from_secs(2);

    let mut app = spawn_api(|s| s.products_db_delay = Duration::ZERO).await;
    let client = app.client.clone();
    let base = app.base.clone();
    let redis_down = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let client = client.clone();
            let base = base.clone();
            let redis_down = redis_down.clone();
            tokio::spawn(async move {
                // (failed reads with their cause, latencies while Redis was down)
                let mut failures = Vec::new();
                let mut down_latencies = Vec::new();
                let mut reads = 0u64;
                let mut i = reader;
                while started.elapsed() < RUN {
                    let was_down = redis_down.load(Ordering::SeqCst);
                    let (outcome, took) = timed_product_read(&client, &base, i).await;
                    i += 1;
                    reads += 1;
                    if let Err(failure) = outcome {
                        failures.push(failure);
                    }
                    if was_down {
                        down_latencies.push(took);
                    }
                }
                (failures, down_latencies, reads)
            })
        })
        .collect();

    tokio::time::sleep(RUN / 2).await;
    app.server.kill9().await;
    redis_down.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    let mut down_latencies = Vec::new();
    let mut reads = 0;
    for reader in readers {
        let (f, d, r) = reader.await.expect("reader task");
        failures.extend(f);
        down_latencies.extend(d);
        reads += r;
    }

    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed: {failures:?}",
        failures.len()
    );
    assert!(
        down_latencies.len() >= 100,
        "too few reads while redis was down to judge: {}",
        down_latencies.len()
    );
    let p99 = p99(&mut down_latencies);
    assert!(
        p99 < DOWN_P99_BOUND,
        "p99 with redis down {p99:?} over {} reads (max {:?})",
        down_latencies.len(),
        down_latencies.last()
    );
    let health = app.health().await;
    assert_ne!(health["redis"]["state"], "ready", "{health}");
    assert!(products_stat(&health, "bypass") > 0, "{health}");
}

/// The reconnect settings a deployment gets by default, so that the
/// "within a second" claims below are checked on the defaults rather than
/// on the quick settings the other tests use.
fn default_reconnect(settings: &mut ApiSettings) {
    let defaults = holdfast_redis::RedisConfig::new(settings.redis.url.clone());
    settings.redis.reconnect_backoff = defaults.reconnect_backoff;
    settings.redis.health_interval = defaults.health_interval;
}

#[tokio::test]
async fn with_redis_unreachable_at_start_the_api_serves_from_the_database_and_uses_the_cache_within_a_second_of_redis_coming_up()
 {
    let mut server = holdfast_testkit::redis().await;
    let url = server.url();
    server.stop().await;
    let app = spawn_api_on(server, url, default_reconnect).await;

    assert_bypassed_to_the_database(
        &app,
        &["/api/products/3", "/api/products/3", "/api/users/4"],
    )
    .await;
    let health = app.health().await;
    assert_eq!(
        health["ready"], true,
        "Redis down is a degraded mode: {health}"
    );
    assert_eq!(health["cache"]["products"]["state"], "degraded", "{health}");

    let mut app = app;
    app.server.restart().await.expect("redis starts");
    let reachable = Instant::now();
    loop {
        let (status, cache, body) = app.read("/api/products/3").await;
        assert_eq!(status, 200, "{body}");
        if cache != "BYPASS" {
            assert_eq!(cache, "MISS", "the first cached read fills the cache");
            break;
        }
        assert!(
            reachable.elapsed() < Duration::from_secs(1),
            "still bypassing the cache {:?} after redis became reachable",
            reachable.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, cache, body) = app.read("/api/products/3").await;
    assert_eq!((status, cache.as_str()), (200, "HIT"), "{body}");
    assert_eq!(body["source"], "cache");
}

/// How long Redis stays down in the restart test: the full scenario is
/// 45 s; CI shortens it (set `HOLDFAST_TEST_REDIS_DOWNTIME_SECS=45` for
/// the full one).
fn redis_downtime() -> Duration {
    std::env::var("HOLDFAST_TEST_REDIS_DOWNTIME_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(3), Duration::from_secs_f64)
}

#[tokio::test]
async fn redis_restarted_after_a_long_downtime_fails_no_read_and_the_history_shows_each_change() {
    const READERS: usize = 8;
    let downtime = redis_downtime();

    let mut app = spawn_api(default_reconnect).await;
    let client = app.client.clone();
    let base = app.base.clone();
    // 0: up before the kill, 1: down, 2: restarted.
    let phase = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (client, base) = (client.clone(), base.clone());
            let (phase, stop) = (phase.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut down_latencies = Vec::new();
                let mut hits_after_restart = 0u64;
                let mut i = reader;
                while !stop.load(Ordering::SeqCst) {
                    let in_phase = phase.load(Ordering::SeqCst);
                    let (outcome, took) = timed_product_read(&client, &base, i).await;
                    i += 1;
                    match outcome {
                        Ok(resp) => {
                            if in_phase == 2 && x_cache(&resp) == "HIT" {
                                hits_after_restart += 1;
                            }
                        }
                        Err(failure) => failures.push(failure),
                    }
                    if in_phase == 1 {
                        down_latencies.push(took);
                    }
                    // Keep the load steady without saturating two cores for
                    // the whole downtime.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (failures, down_latencies, hits_after_restart)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_ms = unix_ms();
    app.server.kill9().await;
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(downtime).await;
    app.server.restart().await.expect("redis restarts");
    let restarted_ms = unix_ms();
    phase.store(2, Ordering::SeqCst);
    holdfast_testkit::wait_until(
        Duration::from_secs(2),
        "cache hits after the restart",
        || {
            let app = &app;
            async move { app.read("/api/products/1").await.1 != "BYPASS" }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);

    let (mut failures, mut down_latencies, mut hits_after_restart) = (Vec::new(), Vec::new(), 0);
    for reader in readers {
        let (f, d, h) = reader.await.expect("reader task");
        failures.extend(f);
        down_latencies.extend(d);
        hits_after_restart += h;
    }
    assert!(failures.is_empty(), "failed reads: {failures:?}");
    assert!(hits_after_restart > 0, "the cache was not used again");
    assert!(
        down_latencies.len() >= 50,
        "too few reads while redis was down: {}",
        down_latencies.len()
    );
    let p99 = p99(&mut down_latencies);
    assert!(p99 < DOWN_P99_BOUND, "p99 with redis down {p99:?}");

    // The history tells the story: ready, lost after the kill, ready again
    // after the restart.
    let health = app.health().await;
    let history = health["redis"]["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {health}"));
    let changes: Vec<(u64, &str, &str)> = history
        .iter()
        .map(|t| {
            (
                t["at_unix_ms"].as_u64().expect("at_unix_ms"),
                t["from"].as_str().expect("from"),
                t["to"].as_str().expect("to"),
            )
        })
        .collect();
    let lost = changes
        .iter()
        .position(|&(at, from, to)| at >= killed_ms && from == "ready" && to != "ready")
        .unwrap_or_else(|| panic!("no change away from ready after the kill: {changes:?}"));
    let back = changes[lost..]
        .iter()
        .find(|&&(_, _, to)| to == "ready")
        .unwrap_or_else(|| panic!("no return to ready: {changes:?}"));
    assert!(
        back.0 + 50 >= restarted_ms,
        "ready again before the restart? {changes:?}"
    );
    assert!(
        changes
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].2 == w[1].1),
        "history out of order or with gaps: {changes:?}"
    );
    assert_eq!(health["redis"]["state"], "ready", "{health}");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
