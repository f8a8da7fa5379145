//! The cache warm-up at start: it runs in the background without
//! delaying readiness, and waits for Redis when Redis is down.

use std::time::{Duration, Instant};

use super::{products_stat, spawn_api, spawn_api_on};

#[tokio::test]
async fn the_warm_up_fills_the_cache_in_the_background_without_delaying_readiness() {
    // A slow product query keeps the warm-up busy for a while.
    let app = spawn_api(|s| {
        s.warm_products = 25;
        s.products_db_delay = Duration::from_millis(600);
    })
    .await;

    let started = Instant::now();
    let resp = app.get("/health/ready").await;
    assert_eq!(resp.status(), 200, "ready while the warm-up runs");
    assert!(started.elapsed() < Duration::from_millis(300));
    let health = app.health().await;
    assert_eq!(health["cache"]["warm_up"]["state"], "running", "{health}");

    holdfast_testkit::wait_until(Duration::from_secs(5), "the warm-up is done", || {
        let app = &app;
        async move { app.health().await["cache"]["warm_up"]["state"] == "done" }
    })
    .await;
    let health = app.health().await;
    // 25 products by id and the first page of the list (20 of them).
    assert_eq!(health["cache"]["warm_up"]["keys"], 26, "{health}");
    assert_eq!(products_stat(&health, "misses"), 0, "{health}");

    for path in ["/api/products/1", "/api/products/25", "/api/products"] {
        let started = Instant::now();
        let (status, cache, body) = app.read(path).await;
        assert_eq!((status, cache.as_str()), (200, "HIT"), "{path}: {body}");
        assert!(started.elapsed() < Duration::from_millis(300), "{path}");
    }
    let (status, cache, _) = app.read("/api/products/26").await;
    assert_eq!((status, cache.as_str()), (200, "MISS"), "not warmed");
}

#[tokio::test]
async fn with_redis_down_the_warm_up_waits_and_readiness_does_not() {
    let mut server = holdfast_testkit::redis().await;
    let url = server.url();
    server.stop().await;
    let mut app = spawn_api_on(server, url, |s| s.warm_products = 5).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    assert_eq!(
        app.health().await["cache"]["warm_up"]["state"],
        "running",
        "waiting for redis"
    );
    app.server.restart().await.expect("redis starts");
    holdfast_testkit::wait_until(Duration::from_secs(5), "the warm-up is done", || {
        let app = &app;
        async move { app.health().await["cache"]["warm_up"]["state"] == "done" }
    })
    .await;
    let (status, cache, _) = app.read("/api/products/5").await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
}
