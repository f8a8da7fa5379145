//! The ingress and worker roles over HTTP, against a real redis-server:
//! request/reply and jobs over the stream, deadlines, poison requests,
//! Redis down or disabled, backpressure, bad input, health, metrics and
//! the API docs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use holdfast_streams::{HandlerError, handler_fn};
use holdfast_testkit::http::{self, problem};
use holdfast_testkit::roles::ingress::{NEW_YORK, spawn_ingress};
use serde_json::Value;

#[tokio::test]
async fn a_forecast_request_is_answered_by_a_worker_over_the_stream() {
    let app = spawn_ingress(|_| {}).await;
    app.spawn_worker().await;

    let resp = app.forecast(NEW_YORK, None).await;

    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["city"], "New York");
    assert_eq!(body["location"], "Downtown");
    assert_eq!(body["forecasts"].as_array().unwrap().len(), 5);
    assert!(body["worker"].as_str().is_some_and(|w| !w.is_empty()));
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504_at_the_deadline_and_is_never_handled() {
    let app = spawn_ingress(|_| {}).await;

    let started = Instant::now();
    let resp = app.forecast(NEW_YORK, Some(300)).await;
    let waited = started.elapsed();

    problem(resp, 504, "deadline_exceeded").await;
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(700),
        "{waited:?}"
    );

    let runs = Arc::new(AtomicUsize::new(0));
    let seen = runs.clone();
    let worker = app
        .spawn_worker_with(
            handler_fn(move |req: holdfast_streams::Request| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move { Ok(req.envelope.body) }
            }),
            |_| {},
        )
        .await;
    holdfast_testkit::wait_until(Duration::from_secs(5), "late entry answered", || {
        let status = worker.status.clone();
        async move { status.handled() == 1 }
    })
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler ran for an expired request"
    );
}

#[tokio::test]
async fn a_request_that_kills_its_handler_every_time_gets_502_and_others_are_still_served() {
    let app = spawn_ingress(|_| {}).await;
    let handler = handler_fn(|req: holdfast_streams::Request| async move {
        let body: Value = serde_json::from_slice(&req.envelope.body).unwrap();
        if body["city"] == "Poison" {
            panic!("handler crashed on purpose");
        }
        Ok::<_, HandlerError>(Bytes::from_static(br#"{"ok":true}"#))
    });
    app.spawn_worker_with(handler, |s| {
        s.worker.max_deliveries = 2;
        s.worker.claim_timeout = Duration::from_millis(300);
    })
    .await;

    let poison = {
        let req = app.forecast_request(r#"{"city": "Poison"}"#, Some(8000));
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    for _ in 0..3 {
        assert_eq!(app.forecast(NEW_YORK, None).await.status(), 200);
    }
    let body = problem(poison.await.unwrap(), 502, "max_deliveries").await;
    assert!(body["request_id"].as_str().is_some());
    assert_eq!(app.forecast(NEW_YORK, None).await.status(), 200);
}

#[tokio::test]
async fn with_redis_down_requests_fail_fast_with_503_and_everything_resumes_when_it_returns() {
    let mut app = spawn_ingress(|_| {}).await;
    app.spawn_worker().await;
    assert_eq!(app.forecast(NEW_YORK, None).await.status(), 200);

    app.server.kill9().await;
    let killed = Instant::now();
    holdfast_testkit::wait_until(Duration::from_secs(2), "ready turns 503", || {
        let req = app.client.get(app.url("/health/ready"));
        async move { req.send().await.unwrap().status() == 503 }
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "outage seen after {:?}",
        killed.elapsed()
    );

    for _ in 0..20 {
        let started = Instant::now();
        let resp = app.forecast(NEW_YORK, Some(5000)).await;
        let took = started.elapsed();
        assert!(resp.headers().contains_key("retry-after"));
        problem(resp, 503, "redis_unavailable").await;
        assert!(took < Duration::from_millis(50), "503 took {took:?}");
    }

    app.server.restart().await.unwrap();
    holdfast_testkit::wait_until(Duration::from_secs(10), "forecasts again", || {
        let req = app.forecast_request(NEW_YORK, None);
        async move { req.send().await.unwrap().status() == 200 }
    })
    .await;
    let health = app.get_json("/health").await;
    let history: Vec<&str> = health["redis"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert!(history.ends_with(&["reconnecting", "ready"]), "{history:?}");
}

#[tokio::test]
async fn a_backlog_over_its_limit_is_answered_429_with_retry_after() {
    let app = spawn_ingress(|s| s.backlog_limit = Some(3)).await;
    for _ in 0..3 {
        let resp = app.submit_job(NEW_YORK).await;
        assert_eq!(resp.status(), 202);
    }
    holdfast_testkit::wait_until(Duration::from_secs(3), "backlog seen", || {
        let req = app.client.get(app.url("/health"));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["backlog"] == 3 }
    })
    .await;

    let resp = app.forecast(NEW_YORK, Some(1000)).await;

    assert!(resp.headers().contains_key("retry-after"));
    problem(resp, 429, "backlog_full").await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_problem_and_never_reaches_a_worker() {
    let app = spawn_ingress(|s| s.stack.body_limit = 1024).await;
    let worker = app.spawn_worker().await;
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "malformed_json"),
        (r#"{"city": 42}"#, 422, "invalid_body"),
        (r#"{"location": "Downtown"}"#, 422, "invalid_body"),
        (
            r#"{"city": "Oslo", "planet": "Earth"}"#,
            422,
            "invalid_body",
        ),
        (r#"{"city": "   "}"#, 422, "invalid_body"),
        (r#"[1, 2, 3]"#, 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        problem(app.forecast(body, None).await, *status, code).await;
    }
    let huge = format!(r#"{{"city": "{}"}}"#, "x".repeat(4096));
    problem(app.forecast(&huge, None).await, 413, "body_too_large").await;
    let resp = app
        .client
        .post(app.url("/WeatherForecast/city"))
        .header("content-type", "text/plain")
        .body(NEW_YORK)
        .send()
        .await
        .unwrap();
    problem(resp, 415, "unsupported_media_type").await;
    let resp = app
        .forecast_request(NEW_YORK, None)
        .header("x-timeout-ms", "soon")
        .send()
        .await
        .unwrap();
    problem(resp, 400, "invalid_timeout").await;
    problem(app.get("/nowhere").await, 404, "not_found").await;
    problem(
        app.get("/WeatherForecast/city").await,
        405,
        "method_not_allowed",
    )
    .await;

    assert_eq!(worker.status.handled(), 0);
}

#[tokio::test]
async fn a_job_is_accepted_at_once_and_its_result_fetched_by_id() {
    let app = spawn_ingress(|_| {}).await;
    let resp = app.submit_job(NEW_YORK).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["status_url"], location);
    let status = app.get_json(&location).await;
    assert_eq!(status["status"], "queued");

    app.spawn_worker().await;
    holdfast_testkit::wait_until(Duration::from_secs(5), "job done", || {
        let req = app.client.get(app.url(&location));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["status"] == "done" }
    })
    .await;
    let done = app.get_json(&location).await;
    assert_eq!(done["result"]["city"], "New York");
    // The same job by its id in capitals: a UUID is case-insensitive.
    let shouted = app
        .get_json(
            &location
                .to_uppercase()
                .replace("/JOBS/WEATHER/", "/jobs/weather/"),
        )
        .await;
    assert_eq!(shouted["status"], "done", "{shouted}");
    assert_eq!(shouted["id"], done["id"]);

    problem(app.get("/jobs/weather/not-an-id").await, 400, "invalid_id").await;
    let unknown = format!("/jobs/weather/{}", holdfast_core::RequestId::new());
    problem(app.get(&unknown).await, 404, "not_found").await;
}

#[tokio::test]
async fn health_metrics_and_api_docs_are_served() {
    let app = spawn_ingress(|_| {}).await;
    let worker = app.spawn_worker().await;
    assert_eq!(app.forecast(NEW_YORK, None).await.status(), 200);

    for base in [&app.base, &app.admin, &worker.admin] {
        for probe in ["live", "ready"] {
            let url = format!("{base}/health/{probe}");
            assert_eq!(http::get(&app.client, &url).await.status(), 200);
        }
    }
    let health = app.get_json("/health").await;
    assert_eq!(health["redis"]["state"], "ready");
    assert_eq!(health["redis"]["breaker"], "closed");
    assert_eq!(health["ready"], true);
    let worker_health = http::get_json(&app.client, &format!("{}/health", worker.admin)).await;
    assert_eq!(worker_health["terminals"]["capacity"], 16);
    assert_eq!(worker_health["terminals"]["active"], 0);

    let metrics = http::get_text(&app.client, &format!("{}/metrics", app.admin)).await;
    for name in [
        "holdfast_http_requests_total",
        "holdfast_calls_total",
        "holdfast_call_duration_seconds_bucket",
        "holdfast_calls_in_flight",
        "holdfast_redis_breaker_state",
        "holdfast_worker_active_terminals",
        "holdfast_topic_backlog",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    let ui = app.get("/swagger-ui/").await;
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    // `/swagger`, where other stacks serve it, leads there.
    let redirected = app.get("/swagger").await;
    assert_eq!(redirected.status(), 200);
    assert!(
        redirected.url().path().ends_with("/swagger-ui/"),
        "{}",
        redirected.url()
    );
    let spec = app.get_json("/api-docs/openapi.json").await;
    assert!(spec["paths"]["/WeatherForecast/city"]["post"].is_object());
    assert!(spec["paths"]["/jobs/weather/{id}"]["get"].is_object());
}

#[tokio::test]
async fn with_redis_disabled_the_ingress_runs_and_answers_503_at_once() {
    let app = spawn_ingress(|s| s.redis = holdfast_redis::RedisConfig::disabled()).await;

    let started = Instant::now();
    let resp = app.forecast(NEW_YORK, None).await;
    let took = started.elapsed();

    problem(resp, 503, "redis_unavailable").await;
    assert!(took < Duration::from_millis(50), "took {took:?}");
    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reasons"][0], "redis is disabled");
}

#[tokio::test]
async fn running_roles_are_listed_in_the_registry_and_leave_it_when_they_stop() {
    use holdfast_services::registry::instances;
    let app = spawn_ingress(|_| {}).await;
    let worker = app.spawn_worker().await;
    let stop_reader = tokio_util::sync::CancellationToken::new();
    let redis = holdfast_testkit::ready_redis(
        holdfast_testkit::quick_redis_config(app.server.url()),
        stop_reader.clone(),
    )
    .await;

    holdfast_testkit::wait_until(Duration::from_secs(5), "both roles registered", || {
        let redis = redis.clone();
        let keys = app.keys.clone();
        async move { instances(&redis, &keys).await.is_ok_and(|l| l.len() == 2) }
    })
    .await;
    let listed = instances(&redis, &app.keys).await.expect("registry read");
    let roles: Vec<&str> = listed.iter().map(|i| i.role.as_str()).collect();
    assert_eq!(roles, ["ingress", "worker"], "{listed:?}");
    assert_eq!(listed[0].admin_url.as_deref(), Some(app.admin.as_str()));
    assert_eq!(listed[1].admin_url.as_deref(), Some(worker.admin.as_str()));
    for instance in &listed {
        let url = format!(
            "{}/health/live",
            instance.admin_url.as_deref().unwrap_or_default()
        );
        assert_eq!(
            http::get(&app.client, &url).await.status(),
            200,
            "{instance:?}"
        );
    }

    app.shutdown.cancel();
    holdfast_testkit::wait_until(
        Duration::from_secs(5),
        "entries deleted on a clean stop",
        || {
            let redis = redis.clone();
            let keys = app.keys.clone();
            async move { instances(&redis, &keys).await.is_ok_and(|l| l.is_empty()) }
        },
    )
    .await;
    stop_reader.cancel();
}

#[tokio::test]
async fn the_dashboard_overview_shows_every_registered_instance_with_its_health() {
    use holdfast_services::dashboard::{Dashboard, DashboardSettings};
    let app = spawn_ingress(|_| {}).await;
    let _worker = app.spawn_worker().await;
    let mut settings =
        DashboardSettings::new(holdfast_testkit::quick_redis_config(app.server.url()));
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.keys = app.keys.clone();
    let dashboard = Dashboard::build(settings).await.expect("dashboard binds");
    let base = format!("http://127.0.0.1:{}", dashboard.port());
    tokio::spawn(dashboard.run_until_stopped(app.shutdown.child_token()));

    let state_url = format!("{base}/api/dashboard/state");
    holdfast_testkit::wait_until(Duration::from_secs(5), "three instances ready", || {
        let client = app.client.clone();
        let url = state_url.clone();
        async move {
            let state = http::get_json(&client, &url).await;
            state["instances"]
                .as_array()
                .is_some_and(|list| list.len() == 3 && list.iter().all(|i| i["healthy"] == true))
        }
    })
    .await;
    let state = http::get_json(&app.client, &state_url).await;
    let roles: Vec<&str> = state["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles, ["dashboard", "ingress", "worker"], "{state}");
    let worker = &state["instances"][2];
    assert_eq!(worker["redis_state"], "ready", "{state}");
    assert_eq!(worker["terminals_total"], 16, "{state}");
    assert_eq!(state["redis"], "ready", "{state}");
    assert_eq!(state["registry_fresh"], true, "{state}");

    let page = http::get(&app.client, &format!("{base}/")).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for text in ["ingress", "worker", "dashboard", "ready"] {
        assert!(
            html.contains(text),
            "{text} missing from the overview:\n{html}"
        );
    }

    // Every view renders; a dashboard without a token takes no action.
    for view in ["streams", "cache", "users?q=a", "loop-tests", "stack-logs"] {
        let page = http::get(&app.client, &format!("{base}/{view}")).await;
        assert_eq!(page.status(), 200, "/{view}");
    }
    for action in [
        "api/dashboard/chaos/crash-redis",
        "api/dashboard/topics/weather/dead-letters/purge",
        "api/dashboard/loop-tests",
    ] {
        let refused = app
            .client
            .post(format!("{base}/{action}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let (status, code) = if action.contains("chaos") {
            (404, "no_control")
        } else {
            (403, "read_only")
        };
        http::problem(refused, status, code).await;
    }

    // The JSON API is in the dashboard's OpenAPI document.
    let doc = http::get_json(&app.client, &format!("{base}/api-docs/openapi.json")).await;
    for path in [
        "/api/dashboard/state",
        "/api/dashboard/events",
        "/api/dashboard/chaos/{action}",
        "/api/dashboard/topics/{topic}/dead-letters/replay",
        "/api/dashboard/loop-tests",
        "/api/dashboard/loop-tests/{id}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from {doc:#}"
        );
    }
}
