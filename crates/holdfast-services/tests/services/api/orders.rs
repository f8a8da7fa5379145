//! Orders: placed for a known user and product, refused for unknown ones,
//! and failed fast with a 503 while the users side is down (the order
//! service checks the user over HTTP, behind a circuit breaker).

use std::time::{Duration, Instant};

use holdfast_testkit::http::{problem, retry_after};
use holdfast_testkit::roles::api::TestApi;
use reqwest::Method;
use serde_json::Value;

use super::{SEED, assert_documented, spawn_api};

holdfast_testkit::on_every_engine!(crate::api::on_engine =>
    an_order_for_a_known_user_and_product_is_created_and_read_back,
    an_order_for_an_unknown_user_or_product_is_refused,
);

async fn an_order_for_a_known_user_and_product_is_created_and_read_back(app: TestApi) {
    let product = app.get_json("/api/products/3").await;
    let price = product["data"]["price_cents"].as_i64().unwrap();

    let resp = app
        .send_json(
            Method::POST,
            "/api/orders",
            r#"{"user_id": 5, "product_id": 3, "quantity": 4}"#,
        )
        .await;
    assert_eq!(resp.status(), 201);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    let order: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/orders/{}", order["id"]));
    assert_eq!(order["user_id"], 5);
    assert_eq!(order["product_id"], 3);
    assert_eq!(order["quantity"], 4);
    assert_eq!(order["total_cents"].as_i64(), Some(price * 4));

    let read = app.get(&location).await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read, order);
    problem(app.get("/api/orders/999999").await, 404, "not_found").await;
    problem(app.get("/api/orders/x").await, 400, "invalid_id").await;

    let health = app.health().await;
    assert_eq!(
        health["users_client"]["breaker"]["state"], "closed",
        "{health}"
    );
    assert_documented(&app, &["/api/orders", "/api/orders/{id}"]).await;
}

async fn an_order_for_an_unknown_user_or_product_is_refused(app: TestApi) {
    let unknown_user = format!(
        r#"{{"user_id": {}, "product_id": 1, "quantity": 1}}"#,
        SEED.users + 100
    );
    for (body, code) in [
        (unknown_user.as_str(), "unknown_user"),
        (
            r#"{"user_id": 1, "product_id": 999999, "quantity": 1}"#,
            "unknown_product",
        ),
        (
            r#"{"user_id": 1, "product_id": 1, "quantity": 1, "extra": 1}"#,
            "invalid_body",
        ),
    ] {
        problem(
            app.send_json(Method::POST, "/api/orders", body).await,
            422,
            code,
        )
        .await;
    }
}

#[tokio::test]
async fn with_the_users_side_down_orders_fail_fast_with_a_503() {
    let port = holdfast_testkit::free_port();
    let app = spawn_api(|s| s.users_base_url = Some(format!("http://127.0.0.1:{port}"))).await;
    let body = r#"{"user_id": 1, "product_id": 1, "quantity": 1}"#;

    for _ in 0..3 {
        let started = Instant::now();
        let resp = app.send_json(Method::POST, "/api/orders", body).await;
        let took = started.elapsed();
        assert!(retry_after(&resp).is_some_and(|s| s >= 1), "{resp:?}");
        problem(resp, 503, "users_unavailable").await;
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }

    let started = Instant::now();
    let resp = app.send_json(Method::POST, "/api/orders", body).await;
    let took = started.elapsed();
    assert!(retry_after(&resp).is_some(), "{resp:?}");
    problem(resp, 503, "users_unavailable").await;
    assert!(took < Duration::from_millis(200), "took {took:?}");

    let health = app.health().await;
    assert_eq!(
        health["users_client"]["breaker"]["state"], "open",
        "{health}"
    );
}
