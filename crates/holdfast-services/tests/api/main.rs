//! The api role over HTTP, against a real redis-server and a real database.
//!
//! The tests of what the database answers (reads through the cache,
//! writes, search, bad input, orders) run on every engine:
//! [`on_every_engine!`] makes one `#[tokio::test]` per engine for each
//! (`<test>::sqlite`, `<test>::postgres`, `<test>::mysql`), each with an api
//! on its own fresh database; PostgreSQL and MariaDB run when
//! `HOLDFAST_TEST_POSTGRES_URL` / `HOLDFAST_TEST_MYSQL_URL` are set, and are
//! skipped with a note otherwise. The tests of Redis faults, health,
//! metrics and the users client do not depend on the engine and run on
//! SQLite only.

mod helpers;

use std::time::{Duration, Instant};

use holdfast_redis::RedisConfig;
use reqwest::Method;
use serde_json::Value;

use helpers::{SEED_USERS, TestApi, spawn_api, x_cache};

macro_rules! on_every_engine {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use crate::helpers::on_engine;
            use holdfast_testkit::db::Engine;

            #[tokio::test]
            async fn sqlite() {
                on_engine(Engine::Sqlite, super::$test).await;
            }

            #[tokio::test]
            async fn postgres() {
                on_engine(Engine::Postgres, super::$test).await;
            }

            #[tokio::test]
            async fn mysql() {
                on_engine(Engine::MySql, super::$test).await;
            }
        }
    )*};
}

on_every_engine!(
    the_first_product_read_comes_from_the_database_and_the_second_from_the_cache,
    a_page_of_products_is_cached_and_its_bounds_are_checked,
    a_user_update_invalidates_the_cached_user,
    a_user_is_created_read_and_deleted,
    search_treats_sql_metacharacters_as_text,
    bad_input_is_answered_with_problem_details,
    an_order_for_a_known_user_and_product_is_created_and_read_back,
    an_order_for_an_unknown_user_or_product_is_refused,
);

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "{:?}", resp.url().path());
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    body
}

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

/// Status, X-Cache and JSON body of a GET.
async fn read(app: &TestApi, path: &str) -> (u16, String, Value) {
    let resp = app.get(path).await;
    let status = resp.status().as_u16();
    let cache = x_cache(&resp);
    (status, cache, resp.json().await.unwrap())
}

async fn the_first_product_read_comes_from_the_database_and_the_second_from_the_cache(
    app: TestApi,
) {
    let first = read(&app, "/api/products/1").await;
    let second = read(&app, "/api/products/1").await;

    assert_eq!((first.0, first.1.as_str()), (200, "MISS"));
    assert_eq!(first.2["source"], "db");
    assert_eq!(first.2["data"]["id"], 1);
    assert_eq!((second.0, second.1.as_str()), (200, "HIT"));
    assert_eq!(second.2["source"], "cache");
    assert_eq!(second.2["data"], first.2["data"]);
}

async fn a_page_of_products_is_cached_and_its_bounds_are_checked(app: TestApi) {
    let first = read(&app, "/api/products?limit=5&offset=2").await;
    let second = read(&app, "/api/products?limit=5&offset=2").await;

    assert_eq!((first.0, first.1.as_str()), (200, "MISS"));
    let page = first.2["data"].as_array().unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(page[0]["id"], 3);
    assert_eq!((second.0, second.1.as_str()), (200, "HIT"));
    for bad in ["limit=0", "limit=101", "limit=x", "offset=-1"] {
        let code = if bad.starts_with("limit") {
            "invalid_limit"
        } else {
            "invalid_offset"
        };
        problem(app.get(&format!("/api/products?{bad}")).await, 400, code).await;
    }
}

async fn a_user_update_invalidates_the_cached_user(app: TestApi) {
    assert_eq!(read(&app, "/api/users/7").await.1, "MISS");
    assert_eq!(read(&app, "/api/users/7").await.1, "HIT");

    let resp = app
        .send_json(Method::PUT, "/api/users/7", r#"{"name": "Grace Renamed"}"#)
        .await;
    assert_eq!(resp.status(), 200);

    let after = read(&app, "/api/users/7").await;
    assert_eq!((after.0, after.1.as_str()), (200, "MISS"));
    assert_eq!(after.2["data"]["name"], "Grace Renamed");
    let again = read(&app, "/api/users/7").await;
    assert_eq!(again.1, "HIT");
    assert_eq!(again.2["data"]["name"], "Grace Renamed");
}

async fn a_user_is_created_read_and_deleted(app: TestApi) {
    // "Not found" is cached too: the create must clear it.
    let next_id = SEED_USERS + 1;
    problem(
        app.get(&format!("/api/users/{next_id}")).await,
        404,
        "not_found",
    )
    .await;

    let resp = app
        .send_json(
            Method::POST,
            "/api/users",
            r#"{"name": "Ada", "email": "Ada.New@Example.com"}"#,
        )
        .await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/users/{}", created["id"]));
    assert_eq!(created["email"], "ada.new@example.com");

    let read_back = read(&app, &location).await;
    assert_eq!(read_back.0, 200);
    assert_eq!(read_back.2["data"]["name"], "Ada");

    let duplicate = app
        .send_json(
            Method::POST,
            "/api/users",
            r#"{"name": "Other", "email": "ada.new@example.com"}"#,
        )
        .await;
    problem(duplicate, 409, "conflict").await;

    let deleted = app
        .client
        .delete(format!("{}{location}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(app.get(&location).await, 404, "not_found").await;
    let again = app
        .client
        .delete(format!("{}{location}", app.base))
        .send()
        .await
        .unwrap();
    problem(again, 404, "not_found").await;
}

async fn search_treats_sql_metacharacters_as_text(app: TestApi) {
    for q in ["%", "_", "'; DROP TABLE users; --", "\" OR 1=1 --"] {
        let resp = app.get(&format!("/api/users/search?q={}", encode(q))).await;
        assert_eq!(resp.status(), 200, "{q}");
        let users: Value = resp.json().await.unwrap();
        assert_eq!(users.as_array().unwrap().len(), 0, "{q} matched {users}");
    }

    let (status, _, body) = read(&app, "/api/users/1").await;
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

async fn bad_input_is_answered_with_problem_details(app: TestApi) {
    for path in [
        "/api/users/abc",
        "/api/users/-1",
        "/api/users/0",
        "/api/users/99999999999999999999",
        "/api/products/1.5",
    ] {
        problem(app.get(path).await, 400, "invalid_id").await;
    }
    problem(app.get("/api/users/search").await, 400, "invalid_query").await;
    problem(
        app.get("/api/users/search?q=%20%20").await,
        400,
        "invalid_query",
    )
    .await;
    let long = "a".repeat(101);
    problem(
        app.get(&format!("/api/users/search?q={long}")).await,
        400,
        "invalid_query",
    )
    .await;
    problem(
        app.get("/api/users/search?q=ada&limit=1000").await,
        400,
        "invalid_limit",
    )
    .await;

    let cases = [
        (
            r#"{"name": "Ada", "email": "not-an-email"}"#,
            422,
            "invalid_body",
        ),
        (
            r#"{"name": "Ada", "email": "a@example.com", "admin": true}"#,
            422,
            "invalid_body",
        ),
        (
            r#"{"name": "", "email": "a@example.com"}"#,
            422,
            "invalid_body",
        ),
        (r#"{"name": "Ada""#, 400, "malformed_json"),
    ];
    for (body, status, code) in cases {
        problem(
            app.send_json(Method::POST, "/api/users", body).await,
            status,
            code,
        )
        .await;
    }
    problem(
        app.send_json(Method::PUT, "/api/users/1", r#"{"email": "nope"}"#)
            .await,
        422,
        "invalid_body",
    )
    .await;
    problem(
        app.send_json(Method::PUT, "/api/users/x", r#"{"name": "Ada"}"#)
            .await,
        400,
        "invalid_id",
    )
    .await;
    problem(
        app.send_json(
            Method::PUT,
            &format!("/api/users/{}", SEED_USERS + 100),
            r#"{"name": "Ada"}"#,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let huge = format!(
        r#"{{"name": "Ada", "email": "a@example.com", "pad": "{}"}}"#,
        "x".repeat(100 * 1024)
    );
    problem(
        app.send_json(Method::POST, "/api/users", &huge).await,
        413,
        "body_too_large",
    )
    .await;
    problem(app.get("/api/products/999999").await, 404, "not_found").await;
}

#[tokio::test]
async fn reads_bypass_the_cache_while_redis_is_down_and_use_it_again_after_a_restart() {
    let mut app = spawn_api(|_| {}).await;
    assert_eq!(read(&app, "/api/products/2").await.1, "MISS");
    assert_eq!(read(&app, "/api/products/2").await.1, "HIT");

    app.server.kill9().await;

    for path in [
        "/api/products/2",
        "/api/users/3",
        "/api/products/4",
        "/api/users/3",
    ] {
        let started = Instant::now();
        let (status, cache, body) = read(&app, path).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(cache, "BYPASS", "{path}");
        assert_eq!(body["source"], "db");
        // The database read is a few milliseconds; a cache that waited on
        // the dead Redis would show here.
        assert!(took < Duration::from_millis(250), "{path} took {took:?}");
    }
    let health: Value = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["ready"], true,
        "redis down is a degraded mode: {health}"
    );
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);

    app.server.restart().await.expect("redis restarts");

    holdfast_testkit::wait_until(Duration::from_secs(5), "reads hit the cache again", || {
        let app = &app;
        async move { read(app, "/api/products/2").await.1 == "HIT" }
    })
    .await;
    let health: Value = app.get("/health").await.json().await.unwrap();
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

    let (status, cache, body) = read(&app, "/api/products/1").await;
    assert_eq!((status, cache.as_str()), (200, "BYPASS"));
    assert_eq!(body["source"], "db");
    let (status, cache, _) = read(&app, "/api/users/1").await;
    assert_eq!((status, cache.as_str()), (200, "BYPASS"));

    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(health["database"]["state"], "up");
    assert_eq!(health["cache"]["users"]["state"], "disabled");
    assert_eq!(health["cache"]["products"]["state"], "disabled");
    assert_eq!(health["cache"]["products"]["stats"]["bypass"], 1);
}

#[tokio::test]
async fn the_admin_listener_serves_health_and_metrics_and_the_api_is_documented() {
    let app = spawn_api(|_| {}).await;
    read(&app, "/api/products/1").await;

    let live = app
        .client
        .get(format!("{}/health/live", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("holdfast_cache"), "{metrics}");
    let openapi: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/api/users/{id}",
        "/api/users/search",
        "/api/users",
        "/api/products",
        "/api/products/{id}",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
}

#[tokio::test]
async fn the_products_delay_applies_to_database_reads_only() {
    let app = spawn_api(|s| s.products_db_delay = Duration::from_millis(300)).await;

    let started = Instant::now();
    assert_eq!(read(&app, "/api/products/5").await.1, "MISS");
    let from_db = started.elapsed();
    let started = Instant::now();
    assert_eq!(read(&app, "/api/products/5").await.1, "HIT");
    let from_cache = started.elapsed();

    assert!(from_db >= Duration::from_millis(300), "{from_db:?}");
    assert!(from_cache < Duration::from_millis(300), "{from_cache:?}");
}

/// The store figures `{"waiting", "active", "served", "total"}` of a body.
fn figures(body: &Value) -> [u64; 4] {
    ["waiting", "active", "served", "total"].map(|k| {
        body[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {body}"))
    })
}

async fn store_step(app: &TestApi, step: &str, body: &str) -> [u64; 4] {
    let resp = app
        .send_json(Method::POST, &format!("/api/store/{step}"), body)
        .await;
    assert_eq!(resp.status(), 200, "{step}");
    figures(&resp.json().await.unwrap())
}

/// The value of the sample `name{labels}` in Prometheus text, whatever the
/// order of its labels (and whatever other labels it carries).
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let present: Vec<(&str, &str)> = rest
            .split(',')
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|want| present.contains(want))
            .then(|| value.parse().ok())
            .flatten()
    })
}

async fn admin_metrics(app: &TestApi) -> String {
    app.client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// The metrics recorder is shared by every test of this binary, so this is
// the only test whose store requests count events; the others only make
// requests that change nothing.
#[tokio::test]
async fn store_steps_update_the_figures_and_the_metrics() {
    let app = spawn_api(|_| {}).await;

    assert_eq!(store_step(&app, "join", "").await, [1, 0, 0, 1]);
    assert_eq!(store_step(&app, "join", "").await, [2, 0, 0, 2]);
    assert_eq!(store_step(&app, "look-around", "").await, [1, 1, 0, 2]);
    assert_eq!(store_step(&app, "served", "").await, [1, 0, 1, 2]);
    let now: Value = app.get("/api/store").await.json().await.unwrap();
    assert_eq!(figures(&now), [1, 0, 1, 2]);

    let metrics = admin_metrics(&app).await;
    let events = |event: &str| {
        sample(
            &metrics,
            "user_events_total",
            &[("event", event), ("service", "store")],
        )
    };
    assert_eq!(events("joined"), Some(2.0), "{metrics}");
    assert_eq!(events("looking_around"), Some(1.0), "{metrics}");
    assert_eq!(events("served"), Some(1.0), "{metrics}");
    for (gauge, value) in [
        ("users_waiting", 1.0),
        ("users_active", 0.0),
        ("users_served", 1.0),
        ("users_total", 2.0),
    ] {
        assert_eq!(
            sample(&metrics, gauge, &[("service", "store")]),
            Some(value),
            "{gauge}: {metrics}"
        );
    }
    assert!(
        metrics.contains("# HELP user_events_total"),
        "help text registered: {metrics}"
    );

    let before = figures(&app.get("/api/store").await.json().await.unwrap());
    let after = store_step(&app, "simulate", r#"{"customers": 5}"#).await;
    assert_eq!(after[2], before[2] + 5, "served grows by 5");
    assert_eq!(after[3], before[3], "total returns to its value");
    assert_eq!([after[0], after[1]], [before[0], before[1]]);
    let after_default = store_step(&app, "simulate", "").await;
    assert_eq!(after_default[2], after[2] + 10, "10 customers by default");

    assert_eq!(store_step(&app, "leave", "").await, [1, 0, 16, 1]);
    let metrics = admin_metrics(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "user_events_total",
            &[("service", "store"), ("event", "joined")]
        ),
        Some(17.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "user_events_total",
            &[("event", "left"), ("service", "store")]
        ),
        Some(16.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn store_steps_with_nobody_to_move_and_bad_simulations_are_refused() {
    let app = spawn_api(|_| {}).await;

    for (step, code) in [
        ("look-around", "nobody_waiting"),
        ("served", "nobody_active"),
        ("leave", "nobody_in_store"),
    ] {
        problem(
            app.send_json(Method::POST, &format!("/api/store/{step}"), "")
                .await,
            409,
            code,
        )
        .await;
    }
    for (body, status, code) in [
        (r#"{"customers": 0}"#, 422, "invalid_body"),
        (r#"{"customers": 5000}"#, 422, "invalid_body"),
        (r#"{"customers": -1}"#, 422, "invalid_body"),
        (r#"{"customers": "x"}"#, 422, "invalid_body"),
        (r#"{"customers": 5, "extra": 1}"#, 422, "invalid_body"),
        (r#"{"customers": "#, 400, "malformed_json"),
        ("x", 400, "malformed_json"),
    ] {
        problem(
            app.send_json(Method::POST, "/api/store/simulate", body)
                .await,
            status,
            code,
        )
        .await;
    }
    let now: Value = app.get("/api/store").await.json().await.unwrap();
    assert_eq!(figures(&now), [0, 0, 0, 0], "nothing changed: {now}");

    let openapi: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/api/store",
        "/api/store/join",
        "/api/store/look-around",
        "/api/store/served",
        "/api/store/leave",
        "/api/store/simulate",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
}

/// The `Retry-After` header of a response, in seconds.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn an_order_for_a_known_user_and_product_is_created_and_read_back(app: TestApi) {
    let product: Value = app.get("/api/products/3").await.json().await.unwrap();
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

    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(
        health["users_client"]["breaker"]["state"], "closed",
        "{health}"
    );
    let openapi: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in ["/api/orders", "/api/orders/{id}"] {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
}

async fn an_order_for_an_unknown_user_or_product_is_refused(app: TestApi) {
    let unknown_user = format!(
        r#"{{"user_id": {}, "product_id": 1, "quantity": 1}}"#,
        SEED_USERS + 100
    );
    problem(
        app.send_json(Method::POST, "/api/orders", &unknown_user)
            .await,
        422,
        "unknown_user",
    )
    .await;
    problem(
        app.send_json(
            Method::POST,
            "/api/orders",
            r#"{"user_id": 1, "product_id": 999999, "quantity": 1}"#,
        )
        .await,
        422,
        "unknown_product",
    )
    .await;
    problem(
        app.send_json(
            Method::POST,
            "/api/orders",
            r#"{"user_id": 1, "product_id": 1, "quantity": 1, "extra": 1}"#,
        )
        .await,
        422,
        "invalid_body",
    )
    .await;
}

#[tokio::test]
async fn with_the_users_side_down_orders_fail_fast_with_a_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
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

    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(
        health["users_client"]["breaker"]["state"], "open",
        "{health}"
    );
}

#[tokio::test]
async fn requests_are_timed_and_errors_counted_under_the_metrics_demo_names() {
    let app = helpers::spawn_api(|_| {}).await;
    let endpoint = [("endpoint", "/api/users/{id}")];
    let timed = [("endpoint", "/api/users/{id}"), ("method", "GET")];
    // Other tests of this binary share the recorder: compare with before.
    let before = admin_metrics(&app).await;
    let errors_before = sample(&before, "api_errors_total", &endpoint).unwrap_or(0.0);
    let timed_before = sample(&before, "api_request_duration_seconds_count", &timed).unwrap_or(0.0);

    assert_eq!(app.get("/api/users/1").await.status(), 200);
    assert_eq!(app.get("/api/users/not-a-number").await.status(), 400);

    let after = admin_metrics(&app).await;
    let errors = sample(&after, "api_errors_total", &endpoint).unwrap_or(0.0);
    let timed_now = sample(&after, "api_request_duration_seconds_count", &timed).unwrap_or(0.0);
    assert!(errors >= errors_before + 1.0, "{after}");
    assert!(timed_now >= timed_before + 2.0, "{after}");
    assert!(
        after.contains(r#"api_request_duration_seconds_bucket{endpoint="/api/users/{id}",method="GET",le="0.005"}"#),
        "explicit buckets in seconds: {after}"
    );
}
