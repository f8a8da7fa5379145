//! Orders while the users side accepts connections and never answers: the
//! order service gives up within its deadline and answers 503.

use std::time::{Duration, Instant};

use holdfast_testkit::net::SilentServer;
use serde_json::Value;

use super::spawn_api;

#[tokio::test]
async fn orders_against_a_users_side_that_never_answers_get_a_503_within_the_deadline() {
    // A server that accepts connections and reads nothing back.
    let silent = SilentServer::start().await;
    let port = silent.port();
    const DEADLINE: Duration = Duration::from_millis(1200);
    let app = spawn_api(|s| {
        s.users_base_url = Some(format!("http://127.0.0.1:{port}"));
        s.users_client.attempt_timeout = Duration::from_millis(300);
        s.users_client.deadline = DEADLINE;
    })
    .await;

    let started = Instant::now();
    let resp = app
        .send_json(
            reqwest::Method::POST,
            "/api/orders",
            r#"{"user_id": 1, "product_id": 1, "quantity": 1}"#,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 503, "{resp:?}");
    assert!(resp.headers().contains_key("retry-after"));
    let problem: Value = resp.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "users_unavailable", "{problem}");
    assert!(
        took >= Duration::from_millis(300) && took < DEADLINE + Duration::from_millis(500),
        "took {took:?}"
    );
    drop(silent);
}
