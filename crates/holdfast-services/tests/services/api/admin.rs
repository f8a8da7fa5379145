//! The api's admin listener (health and metrics), its request metrics
//! under the names of the metrics demo, and the OpenAPI document of the
//! users and products routes.

use holdfast_testkit::prometheus::value_with_labels;

use super::{assert_documented, spawn_api};

#[tokio::test]
async fn the_admin_listener_serves_health_and_metrics_and_the_api_is_documented() {
    let app = spawn_api(|_| {}).await;
    app.read("/api/products/1").await;

    let live =
        holdfast_testkit::http::get(&app.client, &format!("{}/health/live", app.admin)).await;
    assert_eq!(live.status(), 200);
    let metrics = app.admin_metrics().await;
    assert!(metrics.contains("holdfast_cache"), "{metrics}");
    assert_documented(
        &app,
        &[
            "/api/users/{id}",
            "/api/users/search",
            "/api/users",
            "/api/products",
            "/api/products/{id}",
        ],
    )
    .await;
}

#[tokio::test]
async fn requests_are_timed_and_errors_counted_under_the_metrics_demo_names() {
    let app = spawn_api(|_| {}).await;
    let endpoint = [("endpoint", "/api/users/{id}")];
    let timed = [("endpoint", "/api/users/{id}"), ("method", "GET")];
    // Other tests of this binary share the recorder: compare with before.
    let before = app.admin_metrics().await;
    let errors_before = value_with_labels(&before, "api_errors_total", &endpoint).unwrap_or(0.0);
    let timed_before =
        value_with_labels(&before, "api_request_duration_seconds_count", &timed).unwrap_or(0.0);

    assert_eq!(app.get("/api/users/1").await.status(), 200);
    assert_eq!(app.get("/api/users/not-a-number").await.status(), 400);

    let after = app.admin_metrics().await;
    let errors = value_with_labels(&after, "api_errors_total", &endpoint).unwrap_or(0.0);
    let timed_now =
        value_with_labels(&after, "api_request_duration_seconds_count", &timed).unwrap_or(0.0);
    assert!(errors >= errors_before + 1.0, "{after}");
    assert!(timed_now >= timed_before + 2.0, "{after}");
    assert!(
        after.contains(r#"api_request_duration_seconds_bucket{endpoint="/api/users/{id}",method="GET",le="0.005"}"#),
        "explicit buckets in seconds: {after}"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_the_last_log_lines_filtered_by_level() {
    use holdfast_telemetry::recent_logs::{LogLine, recent_logs};
    let app = spawn_api(|_| {}).await;
    // What the process's tracing layer would keep; pushed directly because
    // a test binary installs no global subscriber.
    let marker = format!("admin logs test {}", std::process::id());
    for (level, text) in [("info", "an info line"), ("warn", marker.as_str())] {
        recent_logs().push(LogLine {
            at_unix_ms: 1,
            level,
            target: "test".into(),
            text: text.into(),
        });
    }

    let url = format!("{}/logs?level=warn", app.admin);
    let body = holdfast_testkit::http::get_json(&app.client, &url).await;
    let lines = body["lines"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l["text"] == marker.as_str() && l["level"] == "warn"),
        "{body}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"] == "warn" || l["level"] == "error"),
        "{body}"
    );

    let refused =
        holdfast_testkit::http::get(&app.client, &format!("{}/logs?level=loud", app.admin)).await;
    holdfast_testkit::http::problem(refused, 400, "invalid_level").await;
}
