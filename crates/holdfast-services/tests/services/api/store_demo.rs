//! The store demo: customers join, look around, are served and leave; the
//! figures and the `user_events_total` and `users_*` metrics follow, and
//! steps with nobody to move or bad simulations are refused.

use holdfast_testkit::http::problem;
use holdfast_testkit::prometheus::value_with_labels;
use holdfast_testkit::roles::api::TestApi;
use reqwest::Method;
use serde_json::Value;

use super::{assert_documented, spawn_api};

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
    let now = app.get_json("/api/store").await;
    assert_eq!(figures(&now), [1, 0, 1, 2]);

    let metrics = app.admin_metrics().await;
    let events = |event: &str| {
        value_with_labels(
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
            value_with_labels(&metrics, gauge, &[("service", "store")]),
            Some(value),
            "{gauge}: {metrics}"
        );
    }
    assert!(
        metrics.contains("# HELP user_events_total"),
        "help text registered: {metrics}"
    );

    let before = figures(&app.get_json("/api/store").await);
    let after = store_step(&app, "simulate", r#"{"customers": 5}"#).await;
    assert_eq!(after[2], before[2] + 5, "served grows by 5");
    assert_eq!(after[3], before[3], "total returns to its value");
    assert_eq!([after[0], after[1]], [before[0], before[1]]);
    let after_default = store_step(&app, "simulate", "").await;
    assert_eq!(after_default[2], after[2] + 10, "10 customers by default");
    // `null` is what the schema calls no body: the default again.
    let after_null = store_step(&app, "simulate", "null").await;
    assert_eq!(
        after_null[2],
        after_default[2] + 10,
        "10 customers for null"
    );

    assert_eq!(store_step(&app, "leave", "").await, [1, 0, 26, 1]);
    let metrics = app.admin_metrics().await;
    for (event, total) in [("joined", 27.0), ("left", 26.0)] {
        assert_eq!(
            value_with_labels(
                &metrics,
                "user_events_total",
                &[("service", "store"), ("event", event)]
            ),
            Some(total),
            "{metrics}"
        );
    }
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
        ("[7]", 422, "invalid_body"),
    ] {
        problem(
            app.send_json(Method::POST, "/api/store/simulate", body)
                .await,
            status,
            code,
        )
        .await;
    }
    // The steps also answer GET, as a demo convenience.
    problem(
        app.get("/api/store/look-around").await,
        409,
        "nobody_waiting",
    )
    .await;
    let now = app.get_json("/api/store").await;
    assert_eq!(figures(&now), [0, 0, 0, 0], "nothing changed: {now}");

    assert_documented(
        &app,
        &[
            "/api/store",
            "/api/store/join",
            "/api/store/look-around",
            "/api/store/served",
            "/api/store/leave",
            "/api/store/simulate",
        ],
    )
    .await;
}
