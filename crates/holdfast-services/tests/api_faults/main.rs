//! Fault cases of the api role (issue 3, "Faults and bad input"), over
//! HTTP against a real redis-server and SQLite.

mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use helpers::{SEED_PRODUCTS, spawn_api, spawn_api_on};

/// A counter of the products cache in a `/health` report.
fn products_stat(health: &Value, name: &str) -> u64 {
    health["cache"]["products"]["stats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no products stat {name} in {health}"))
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
    let app = spawn_api_on(server, wrong_url, false, |_| {}).await;

    holdfast_testkit::wait_until(Duration::from_secs(5), "health reports auth_failed", || {
        let app = &app;
        async move { app.health().await["redis"]["last_error"] == "auth_failed" }
    })
    .await;
    for path in ["/api/products/3", "/api/products/3", "/api/products/4"] {
        let (status, cache, body) = app.read(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(cache, "BYPASS", "{path}");
        assert_eq!(body["source"], "db", "{path}");
    }
    let health = app.health().await;
    assert_eq!(health["redis"]["last_error"], "auth_failed", "{health}");
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
async fn a_hundred_concurrent_reads_of_one_cold_product_query_the_database_once() {
    // A slow database read keeps the first load under way while the
    // other 99 reads arrive, so they must join it.
    let app = Arc::new(spawn_api(|s| s.products_db_delay = Duration::from_millis(300)).await);
    let before = app.health().await;
    assert_eq!(products_stat(&before, "misses"), 0, "{before}");

    let readers: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.read("/api/products/17").await })
        })
        .collect();
    for reader in readers {
        let (status, cache, body) = reader.await.expect("reader task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["id"], 17, "{body}");
        assert!(cache == "MISS" || cache == "HIT", "X-Cache {cache}");
    }

    let health = app.health().await;
    let misses = products_stat(&health, "misses");
    let hits = products_stat(&health, "hits");
    let joins = products_stat(&health, "single_flight_joins");
    assert_eq!(products_stat(&health, "bypass"), 0, "{health}");
    assert_eq!(products_stat(&health, "stale"), 0, "{health}");
    assert_eq!(products_stat(&health, "loader_errors"), 0, "{health}");
    assert_eq!(hits + misses, 100, "every read answered once: {health}");
    // Every miss but the one that called the loader joined its flight.
    assert_eq!(
        misses - joins,
        1,
        "database queried more than once: {health}"
    );
}

#[tokio::test]
async fn redis_killed_during_a_load_of_reads_fails_no_read() {
    const READERS: usize = 20;
    const RUN: Duration = Duration::from_secs(2);
    // products_db_delay is 0, so a read without Redis is one SQLite query;
    // the bound is that plus generous slack for a debug build on a busy
    // machine. A read that waited on the dead Redis would show here.
    const DOWN_P99_BOUND: Duration = Duration::from_millis(100);

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
                    let id = i % SEED_PRODUCTS as usize + 1;
                    i += 1;
                    let was_down = redis_down.load(Ordering::SeqCst);
                    let sent = Instant::now();
                    let outcome = client.get(format!("{base}/api/products/{id}")).send().await;
                    let took = sent.elapsed();
                    reads += 1;
                    match outcome {
                        Ok(resp) if resp.status() == 200 => {}
                        Ok(resp) => failures.push(format!("product {id}: {}", resp.status())),
                        Err(err) => failures.push(format!("product {id}: {err}")),
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
    down_latencies.sort();
    let p99 = down_latencies[(down_latencies.len() * 99).div_ceil(100) - 1];
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
