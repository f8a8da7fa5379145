//! The api with its database gone: a product cached before is served stale
//! up to the maximum staleness, anything else is a 503 with `Retry-After`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{products_stat, spawn_api};

#[tokio::test]
async fn with_the_database_down_an_expired_cached_product_is_served_stale_within_max_stale_then_503()
 {
    const TTL: Duration = Duration::from_millis(300);
    const MAX_STALE: Duration = Duration::from_millis(1500);
    let app = spawn_api(|s| {
        s.cache.ttl = TTL;
        s.cache.ttl_jitter = 0.0;
        s.cache.max_stale = MAX_STALE;
    })
    .await;

    let loaded = Instant::now();
    let (status, cache, body) = app.read("/api/products/5").await;
    assert_eq!((status, cache.as_str()), (200, "MISS"), "{body}");
    let fresh = body["data"].clone();
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;

    // The database goes away: every query now fails.
    app.store.close().await;

    let (status, cache, body) = app.read("/api/products/5").await;
    assert_eq!((status, cache.as_str()), (200, "STALE"), "{body}");
    assert_eq!(body["source"], "stale");
    assert_eq!(body["data"], fresh, "the last good value");
    assert!(loaded.elapsed() < TTL + MAX_STALE);

    // A product never cached has nothing to fall back on.
    let resp = app.get("/api/products/6").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"), "{resp:?}");
    let problem: Value = resp.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "db_unavailable", "{problem}");

    // Past the maximum staleness the stale copy is no longer served.
    let past = (TTL + MAX_STALE + Duration::from_millis(200)).saturating_sub(loaded.elapsed());
    tokio::time::sleep(past).await;
    let resp = app.get("/api/products/5").await;
    assert_eq!(resp.status(), 503, "{resp:?}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = resp.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "db_unavailable", "{problem}");
    let health = app.health().await;
    assert!(products_stat(&health, "stale") >= 1, "{health}");
    assert!(products_stat(&health, "loader_errors") >= 2, "{health}");
}
