//! The api without Redis: killed and restarted, or switched off. Reads
//! bypass the cache and come from the database at database speed, and the
//! api stays ready, since Redis down is a degraded mode, not an outage.

use std::time::{Duration, Instant};

use holdfast_redis::RedisConfig;

use super::spawn_api;

#[tokio::test]
async fn reads_bypass_the_cache_while_redis_is_down_and_use_it_again_after_a_restart() {
    let mut app = spawn_api(|_| {}).await;
    assert_eq!(app.read("/api/products/2").await.1, "MISS");
    assert_eq!(app.read("/api/products/2").await.1, "HIT");

    app.server.kill9().await;

    for path in [
        "/api/products/2",
        "/api/users/3",
        "/api/products/4",
        "/api/users/3",
    ] {
        let started = Instant::now();
        let (status, cache, body) = app.read(path).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(cache, "BYPASS", "{path}");
        assert_eq!(body["source"], "db");
        // The database read is a few milliseconds; a cache that waited on
        // the dead Redis would show here.
        assert!(took < Duration::from_millis(250), "{path} took {took:?}");
    }
    let health = app.health().await;
    assert_eq!(
        health["ready"], true,
        "redis down is a degraded mode: {health}"
    );
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);

    app.server.restart().await.expect("redis restarts");

    holdfast_testkit::wait_until(Duration::from_secs(5), "reads hit the cache again", || {
        let app = &app;
        async move { app.read("/api/products/2").await.1 == "HIT" }
    })
    .await;
    let health = app.health().await;
    assert_eq!(health["cache"]["products"]["state"], "ready", "{health}");
    assert!(
        health["cache"]["products"]["stats"]["bypass"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

#[tokio::test]
async fn with_redis_disabled_reads_bypass_and_health_says_disabled() {
    let app = spawn_api(|s| s.redis = RedisConfig::disabled()).await;

    let (status, cache, body) = app.read("/api/products/1").await;
    assert_eq!((status, cache.as_str()), (200, "BYPASS"));
    assert_eq!(body["source"], "db");
    let (status, cache, _) = app.read("/api/users/1").await;
    assert_eq!((status, cache.as_str()), (200, "BYPASS"));

    let health = app.health().await;
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(health["database"]["state"], "up");
    assert_eq!(health["cache"]["users"]["state"], "disabled");
    assert_eq!(health["cache"]["products"]["state"], "disabled");
    assert_eq!(health["cache"]["products"]["stats"]["bypass"], 1);
}
