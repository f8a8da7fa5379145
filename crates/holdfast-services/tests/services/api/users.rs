//! Users through the cache: a write clears the cached copy, the life of a
//! user from create to delete, and a search that takes SQL metacharacters
//! as text.

use holdfast_testkit::http::problem;
use holdfast_testkit::roles::api::TestApi;
use reqwest::Method;
use serde_json::Value;

use super::SEED;

holdfast_testkit::on_every_engine!(crate::api::on_engine =>
    a_user_update_invalidates_the_cached_user,
    a_user_is_created_read_and_deleted,
    search_treats_sql_metacharacters_as_text,
);

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /api/users` with `body`.
async fn post_user(app: &TestApi, body: &str) -> reqwest::Response {
    app.send_json(Method::POST, "/api/users", body).await
}

async fn a_user_update_invalidates_the_cached_user(app: TestApi) {
    assert_eq!(app.read("/api/users/7").await.1, "MISS");
    assert_eq!(app.read("/api/users/7").await.1, "HIT");

    let resp = app
        .send_json(Method::PUT, "/api/users/7", r#"{"name": "Grace Renamed"}"#)
        .await;
    assert_eq!(resp.status(), 200);

    let after = app.read("/api/users/7").await;
    assert_eq!((after.0, after.1.as_str()), (200, "MISS"));
    assert_eq!(after.2["data"]["name"], "Grace Renamed");
    let again = app.read("/api/users/7").await;
    assert_eq!(again.1, "HIT");
    assert_eq!(again.2["data"]["name"], "Grace Renamed");
}

async fn a_user_is_created_read_and_deleted(app: TestApi) {
    // "Not found" is cached too: the create must clear it.
    let next_id = SEED.users + 1;
    problem(
        app.get(&format!("/api/users/{next_id}")).await,
        404,
        "not_found",
    )
    .await;

    let resp = post_user(&app, r#"{"name": "Ada", "email": "Ada.New@Example.com"}"#).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/users/{}", created["id"]));
    assert_eq!(created["email"], "ada.new@example.com");

    let read_back = app.read(&location).await;
    assert_eq!(read_back.0, 200);
    assert_eq!(read_back.2["data"]["name"], "Ada");

    let duplicate = post_user(&app, r#"{"name": "Other", "email": "ada.new@example.com"}"#).await;
    problem(duplicate, 409, "conflict").await;

    let deleted = app.delete(&location).await;
    assert_eq!(deleted.status(), 204);
    problem(app.get(&location).await, 404, "not_found").await;
    problem(app.delete(&location).await, 404, "not_found").await;
}

async fn search_treats_sql_metacharacters_as_text(app: TestApi) {
    for q in ["%", "_", "'; DROP TABLE users; --", "\" OR 1=1 --"] {
        let resp = app.get(&format!("/api/users/search?q={}", encode(q))).await;
        assert_eq!(resp.status(), 200, "{q}");
        let users: Value = resp.json().await.unwrap();
        assert_eq!(users.as_array().unwrap().len(), 0, "{q} matched {users}");
    }

    let (status, _, body) = app.read("/api/users/1").await;
    assert_eq!(status, 200, "the users table still answers");
    let name = body["data"]["name"].as_str().unwrap().to_owned();
    let first_word = name.split_whitespace().next().unwrap();
    let resp = app
        .get(&format!(
            "/api/users/search?q={}&limit=100",
            encode(first_word)
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let found: Value = resp.json().await.unwrap();
    assert!(
        found.as_array().unwrap().iter().any(|u| u["id"] == 1),
        "{found}"
    );
}
