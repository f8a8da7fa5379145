//! The cache of the api under a burst and as it reports itself: a hundred
//! reads of one cold product query the database once (single flight), and
//! the cache's figures are exported on the admin listener.

use std::sync::Arc;
use std::time::Duration;

use super::{products_stat, spawn_api};

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
async fn cache_metrics_are_exported_on_the_admin_listener() {
    let app = spawn_api(|s| s.products_db_delay = Duration::from_millis(100)).await;
    // A miss with joins (two reads of one cold key), then a hit.
    let (first, second) = tokio::join!(app.read("/api/products/2"), app.read("/api/products/2"));
    assert_eq!((first.0, second.0), (200, 200));
    assert_eq!(app.read("/api/products/2").await.1, "HIT");
    assert_eq!(app.read("/api/products/999").await.0, 404);

    let text = app.admin_metrics().await;
    for wanted in [
        r#"holdfast_cache_reads_total{entity="products",outcome="hit"}"#,
        r#"holdfast_cache_reads_total{entity="products",outcome="miss"}"#,
        r#"holdfast_cache_single_flight_joins_total{entity="products"}"#,
        r#"holdfast_cache_loader_duration_seconds_bucket{entity="products",le="0.25"}"#,
        "holdfast_redis_breaker_state",
        "# HELP holdfast_cache_reads_total",
    ] {
        assert!(
            text.contains(wanted),
            "{wanted} missing from /metrics:\n{text}"
        );
    }
}
