//! Two api instances on one Redis and one database, as two processes: a
//! write on one is seen by the next read on the other, through the shared
//! Redis copy, or through the invalidation broadcast when each has an L1.

use std::time::{Duration, Instant};

use holdfast_services::api::ApiSettings;
use holdfast_testkit::roles::api::TestApi;

use super::spawn_api;

/// `PUT /api/users/{id}` with the new `name` on `app`.
async fn rename_user(app: &TestApi, id: u32, name: &str) -> reqwest::Response {
    let body = format!(r#"{{"name": "{name}"}}"#);
    app.send_json(reqwest::Method::PUT, &format!("/api/users/{id}"), &body)
        .await
}

#[tokio::test]
async fn a_write_on_one_instance_is_seen_by_the_next_read_on_another() {
    // Without L1 (the default) both instances read Redis, and the write
    // deletes the Redis copy before it answers.
    let a = spawn_api(|_| {}).await;
    let b = a.second_instance(|_| {}).await;
    for _ in 0..2 {
        assert_eq!(b.read("/api/users/7").await.0, 200);
    }
    assert_eq!(b.read("/api/users/7").await.1, "HIT");

    let resp = rename_user(&a, 7, "Renamed Seven").await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    let (status, cache, body) = b.read("/api/users/7").await;
    assert_eq!((status, cache.as_str()), (200, "MISS"), "{body}");
    assert_eq!(body["data"]["name"], "Renamed Seven", "{body}");
    let (_, cache, body) = a.read("/api/users/7").await;
    assert_eq!(cache, "HIT", "the reload on b filled the shared cache");
    assert_eq!(body["data"]["name"], "Renamed Seven", "{body}");
}

#[tokio::test]
async fn with_l1_on_a_write_reaches_the_other_instance_s_l1_through_the_broadcast() {
    // An L1 TTL far longer than the test: only the broadcast can clear it.
    let l1 = |s: &mut ApiSettings| {
        s.cache.l1 = Some(holdfast_cache::L1Config {
            capacity: 1_000,
            ttl: Duration::from_secs(300),
        });
    };
    let a = spawn_api(l1).await;
    let b = a.second_instance(l1).await;
    // Both L1 subscribers must be listening before the write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for path in ["/api/users/9", "/api/users/10"] {
        b.read(path).await;
        let (status, cache, _) = b.read(path).await;
        assert_eq!((status, cache.as_str()), (200, "HIT"), "{path}");
    }

    let resp = rename_user(&a, 9, "Nine Again").await;
    assert_eq!(resp.status(), 200);
    let resp = a
        .send_json(reqwest::Method::DELETE, "/api/users/10", "")
        .await;
    assert!(resp.status().is_success(), "{resp:?}");

    let written = Instant::now();
    holdfast_testkit::wait_until(Duration::from_secs(1), "b sees the write", || {
        let b = &b;
        async move {
            let (_, _, body) = b.read("/api/users/9").await;
            body["data"]["name"] == "Nine Again"
        }
    })
    .await;
    holdfast_testkit::wait_until(Duration::from_secs(1), "b sees the delete", || {
        let b = &b;
        async move { b.read("/api/users/10").await.0 == 404 }
    })
    .await;
    tracing::info!(took = ?written.elapsed(), "the broadcast reached the other instance");
}
