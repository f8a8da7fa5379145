//! The `holdfast` binary as an operator runs it: real processes that are
//! killed, signalled and replaced while requests are in flight.
//!
//! Each test starts its own redis-server and picks free ports, so tests run
//! in parallel without seeing each other; see `helpers.rs`.

mod acl;
mod browser;
mod cluster;
mod dashboard;
mod durability;
mod helpers;
mod sentinel;

use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use tokio::time::Instant;

use helpers::{
    IngressOnRedis, answers, dashboard_link, http_client, pending_requests, post_forecast,
    read_banner, send_forecasts, spawn_ingress, spawn_up, spawn_worker,
};
use serde_json::json;

/// How long a role has to exit after SIGTERM or SIGINT once its requests
/// are answered (a blocking stream read takes up to 1 s to notice).
const EXIT_GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_worker_killed_with_sigkill_has_its_requests_answered_by_another_worker_before_the_deadline()
 {
    // Arrange: worker A is slow enough that it holds all five requests
    // when it dies.
    let stack = IngressOnRedis::start().await;
    let mut worker_a = stack
        .spawn_worker(
            "worker-a",
            &[
                "--processing-time",
                "2s",
                "--claim-timeout",
                "1s",
                "--concurrency",
                "8",
            ],
        )
        .await;
    let deadline = Duration::from_millis(8000);
    let requests = stack.send_forecasts(
        &["Oslo", "Lima", "Pune", "Kyiv", "Doha"],
        deadline.as_millis() as u64,
    );
    worker_a.wait_until_holding(&stack.client, 5).await;

    // Act: A dies without a chance to answer; B joins the group.
    worker_a.kill9().await;
    let _worker_b = stack
        .spawn_worker(
            "worker-b",
            &["--processing-time", "100ms", "--claim-timeout", "1s"],
        )
        .await;

    // Assert
    for answer in answers(requests).await {
        assert_eq!(answer.status, StatusCode::OK, "body: {}", answer.body);
        assert_eq!(answer.body["worker"], "worker-b", "body: {}", answer.body);
        assert!(
            answer.elapsed < deadline,
            "answered after {:?}, past the {deadline:?} deadline",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn sigterm_on_a_worker_lets_requests_in_flight_finish_and_be_acknowledged() {
    // Arrange
    let stack = IngressOnRedis::start().await;
    let mut worker = stack
        .spawn_worker("worker-draining", &["--processing-time", "1500ms"])
        .await;
    let requests = stack.send_forecasts(&["Oslo", "Lima", "Pune"], 10_000);
    worker.wait_until_holding(&stack.client, 3).await;

    // Act
    worker.signal(Signal::SIGTERM);

    // Assert: answered by the worker that was told to stop, which then
    // exits cleanly having acknowledged everything it took.
    for answer in answers(requests).await {
        assert_eq!(answer.status, StatusCode::OK, "body: {}", answer.body);
        assert_eq!(answer.body["worker"], "worker-draining");
    }
    let status = worker.exit_status(EXIT_GRACE).await;
    assert!(status.success(), "worker exited with {status}");
    assert_eq!(
        pending_requests(&stack.redis).await,
        0,
        "entries left pending"
    );
}

#[tokio::test]
async fn sigterm_on_the_ingress_answers_requests_in_flight_and_refuses_new_ones() {
    // Arrange
    let client = http_client();
    let redis = holdfast_testkit::redis().await;
    let _worker = spawn_worker(
        &client,
        &redis,
        "worker-slow",
        &["--processing-time", "1500ms"],
    )
    .await;
    let mut ingress = spawn_ingress(&client, &redis).await;
    let port = ingress.port.expect("ingress port");
    let requests = send_forecasts(&client, port, &["Oslo", "Lima"], 10_000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act
    ingress.signal(Signal::SIGTERM);

    // Assert: the signal is handled asynchronously, so a request may still
    // slip in just after it; soon every new one must be turned away.
    let refused_by = Instant::now() + Duration::from_secs(2);
    let refusal = loop {
        match post_forecast(&client, port, "Pune", 300).await {
            Err(error) if error.is_connect() => break format!("connection refused: {error}"),
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                break "503".to_owned();
            }
            other => {
                let seen = other.map(|r| r.status().to_string());
                assert!(
                    Instant::now() < refused_by,
                    "new requests still accepted after SIGTERM; last: {seen:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for answer in answers(requests).await {
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "in-flight request lost after {refusal}; body: {}",
            answer.body
        );
    }
    let status = ingress.exit_status(EXIT_GRACE).await;
    assert!(status.success(), "ingress exited with {status}");
}

#[tokio::test]
async fn holdfast_up_serves_a_forecast_and_stops_cleanly_on_sigint() {
    // Arrange: no REDIS_URL, so `up` starts its own redis-server. The
    // banner comes before the Redis connection is up (a request sent at
    // once gets 503), so `spawn_up` also waits for the ingress to be ready.
    let client = http_client();
    let logs = tempfile::tempdir().expect("a log directory");
    let log_dir = logs.path().to_str().expect("a UTF-8 path").to_owned();
    let mut up = helpers::spawn_up_with(&client, &["--log-dir", &log_dir]).await;
    let mut stdout = up.stdout_lines();
    let mut transcript = read_banner(&mut stdout).await;

    // Act
    let response = post_forecast(&client, up.port.expect("ingress port"), "New York", 5_000)
        .await
        .expect("forecast request");
    let status = response.status();
    let forecast: serde_json::Value = response.json().await.expect("forecast JSON");
    up.signal(Signal::SIGINT);
    let exit = up.exit_status(Duration::from_secs(10)).await;
    while let Ok(Some(line)) = stdout.next_line().await {
        transcript.push(line);
    }

    // Assert
    assert_eq!(status, StatusCode::OK, "body: {forecast}");
    assert_eq!(
        forecast["forecasts"].as_array().map(Vec::len),
        Some(5),
        "body: {forecast}"
    );
    assert!(exit.success(), "`holdfast up` exited with {exit}");
    assert!(
        transcript.iter().any(|l| l.contains("holdfast stopped")),
        "stdout: {transcript:#?}"
    );
    // In order: the ingress drained before the workers, and each worker
    // drained and stopped by itself (not killed).
    let log = |name: &str| {
        std::fs::read_to_string(logs.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("{name}.log: {e}"))
    };
    let at = |text: &str, what: &str| -> String {
        text.lines()
            .find(|l| l.contains(what))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {what:?} in:\n{text}"))
    };
    let (ingress, worker) = (log("ingress"), log("worker-1"));
    let ingress_drained = at(&ingress, "draining");
    let worker_drained = at(&worker, "worker draining");
    at(&worker, "worker stopped");
    assert!(
        ingress_drained <= worker_drained,
        "the ingress drained at {ingress_drained}, the worker at {worker_drained}"
    );
}

/// The dashboard's state, as JSON.
async fn dashboard_state(client: &reqwest::Client, dashboard: &str) -> serde_json::Value {
    client
        .get(format!("{dashboard}api/dashboard/state"))
        .send()
        .await
        .expect("dashboard state")
        .json()
        .await
        .expect("dashboard state JSON")
}

/// Polls the dashboard's state until `check` holds, for at most `within`;
/// the state that passed, or a panic naming `what` with the last state.
async fn wait_for_state(
    client: &reqwest::Client,
    dashboard: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        let state = dashboard_state(client, dashboard).await;
        if check(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{what} did not happen within {within:?}; last state: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn redis_states(state: &serde_json::Value) -> Vec<String> {
    state["instances"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|i| i["redis_state"].as_str().unwrap_or("none").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn holdfast_up_plays_chaos_from_its_dashboard_and_restarts_a_killed_worker() {
    // Arrange: `up` with every role as its own process.
    let client = http_client();
    let mut up = spawn_up(&client).await;
    let mut stdout = up.stdout_lines();
    let banner = read_banner(&mut stdout).await;
    let link = dashboard_link(&banner);
    let (dashboard, token) = link
        .split_once("#token=")
        .expect("the link carries a token");
    let dashboard = dashboard.to_owned();
    let roles = helpers::UP_ROLES;
    wait_for_state(
        &client,
        &dashboard,
        Duration::from_secs(10),
        "every role ready",
        |s| {
            let found: Vec<_> = s["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["healthy"] == true)
                .filter_map(|i| i["role"].as_str())
                .collect();
            found == roles
        },
    )
    .await;
    let chaos = |action: &str| format!("{dashboard}api/dashboard/chaos/{action}");

    // Act and assert: no token, no action.
    let refused = client
        .post(chaos("crash-redis"))
        .json(&json!({"down_for_s": 2}))
        .send()
        .await
        .expect("chaos without a token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let state = dashboard_state(&client, &dashboard).await;
    assert!(state["stack"]["running"].is_null(), "{state:#}");

    // Crash Redis for 2 s: every role reconnects, then all are ready.
    let crashed = client
        .post(chaos("crash-redis"))
        .bearer_auth(token)
        .json(&json!({"down_for_s": 2}))
        .send()
        .await
        .expect("crash redis");
    assert_eq!(crashed.status(), StatusCode::ACCEPTED);
    let busy = client
        .post(chaos("slow-redis"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("a second action");
    assert_eq!(busy.status(), StatusCode::CONFLICT, "one action at a time");
    wait_for_state(
        &client,
        &dashboard,
        Duration::from_secs(2),
        "every role's Redis down",
        |s| {
            let states = redis_states(s);
            states.len() == roles.len() && states.iter().all(|st| st != "ready")
        },
    )
    .await;
    wait_for_state(
        &client,
        &dashboard,
        Duration::from_secs(6),
        "every role's Redis back",
        |s| {
            let states = redis_states(s);
            s["stack"]["running"].is_null()
                && states.len() == roles.len()
                && states.iter().all(|st| st == "ready")
        },
    )
    .await;

    // Kill a worker: `up` starts it again.
    let killed = client
        .post(chaos("kill-worker"))
        .bearer_auth(token)
        .json(&json!({"worker": 1}))
        .send()
        .await
        .expect("kill a worker");
    assert_eq!(killed.status(), StatusCode::ACCEPTED);
    let state = wait_for_state(
        &client,
        &dashboard,
        Duration::from_secs(10),
        "worker-1 restarted",
        |s| {
            s["stack"]["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "worker-1" && p["restarts"] == 1 && p["running"] == true)
        },
    )
    .await;
    let events: Vec<_> = state["stack"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(
        events.iter().any(|e| e.contains("exited unexpectedly")),
        "{events:#?}"
    );

    // Stop: everything goes, cleanly.
    up.signal(Signal::SIGINT);
    let exit = up.exit_status(Duration::from_secs(20)).await;
    assert!(exit.success(), "`holdfast up` exited with {exit}");
}

#[tokio::test]
async fn holdfast_up_without_redis_runs_every_role_and_the_dashboard_lists_them() {
    // Arrange: REDIS_ENABLED=false, so no redis-server and no registry.
    let client = http_client();
    let (mut command, admin_port, port) = helpers::up_command();
    command.env("REDIS_ENABLED", "false");
    let mut up = helpers::Process::spawn("up", command, admin_port, Some(port));
    let mut stdout = up.stdout_lines();
    let banner = read_banner(&mut stdout).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("redis           disabled")),
        "{banner:#?}"
    );
    let dashboard = dashboard_link(&banner)
        .split_once('#')
        .expect("a token")
        .0
        .to_owned();
    let api = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("api ").map(str::trim))
        .expect("the api's URL")
        .to_owned();

    // Act and assert: the dashboard lists the stack's processes from `up`
    // itself, and the api answers from its database.
    let state = wait_for_state(
        &client,
        &dashboard,
        Duration::from_secs(10),
        "every process listed",
        |s| s["instances"].as_array().is_some_and(|all| all.len() == 6),
    )
    .await;
    assert_eq!(state["registry_fresh"], false, "{state:#}");
    let api_view = state["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "api")
        .cloned()
        .expect("the api");
    assert_eq!(api_view["redis_state"], "disabled", "{state:#}");
    let product = client
        .get(format!("{api}/api/products/1"))
        .send()
        .await
        .expect("a product");
    assert_eq!(product.status(), StatusCode::OK);
    assert_eq!(product.headers()["x-cache"], "BYPASS");

    up.signal(Signal::SIGINT);
    let exit = up.exit_status(Duration::from_secs(20)).await;
    assert!(exit.success(), "`holdfast up` exited with {exit}");
}

#[tokio::test]
async fn calls_and_jobs_go_over_tls_with_the_ca_file() {
    // Arrange: a TLS-only redis-server with certificates made here; the
    // roles trust it through --redis-ca-file.
    let client = http_client();
    let certs = holdfast_testkit::tls::TestCerts::localhost();
    let redis = holdfast_testkit::LocalRedis::start(holdfast_testkit::LocalRedisOptions {
        tls: Some(holdfast_testkit::LocalTls {
            cert_file: certs.server_cert(),
            key_file: certs.server_key(),
            ca_file: certs.ca(),
            client: None,
        }),
        ..holdfast_testkit::LocalRedisOptions::default()
    })
    .await
    .expect("a TLS redis-server");
    let ca = certs.ca().display().to_string();
    let _worker = spawn_worker(&client, &redis, "tls-worker", &["--redis-ca-file", &ca]).await;
    let ingress = helpers::spawn_ingress_with(&client, &redis, &["--redis-ca-file", &ca]).await;
    let port = ingress.port.expect("ingress port");

    // Act
    let call = post_forecast(&client, port, "Oslo", 5_000)
        .await
        .expect("a call");
    let call_status = call.status();
    let job = client
        .post(format!("http://127.0.0.1:{port}/jobs/weather"))
        .json(&json!({"city": "Lima", "location": "Centro"}))
        .send()
        .await
        .expect("a job");
    let job_status = job.status();
    let job: serde_json::Value = job.json().await.expect("job JSON");
    let id = job["id"].as_str().expect("a job id").to_owned();
    let give_up = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let status: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/jobs/weather/{id}"))
            .send()
            .await
            .expect("job status")
            .json()
            .await
            .expect("status JSON");
        if status["status"] == "done" || Instant::now() > give_up {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Assert
    assert!(redis.url().starts_with("rediss://"));
    assert_eq!(call_status, StatusCode::OK);
    assert_eq!(job_status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(done["status"], "done", "{done}");
}

/// Runs a short-lived `holdfast` command to completion and returns stdout.
async fn run_to_end(args: &[&str]) -> String {
    let mut command = helpers::holdfast_command(args);
    command.stdout(std::process::Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("command finished")
        .expect("command ran");
    assert!(
        output.status.success(),
        "holdfast {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged_from_the_command_line() {
    // Arrange: two garbage entries, written by hand, that a worker dead-letters.
    let client = http_client();
    let redis = holdfast_testkit::redis().await;
    let url = redis.url();
    {
        use holdfast_redis::redis;
        let mut connection = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for city in ["Oslo", "Lima"] {
            let _: String = redis::cmd("XADD")
                .arg("hf:{weather:0}:req")
                .arg("*")
                .arg("city")
                .arg(city)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
    let worker = spawn_worker(&client, &redis, "w-dead", &["--processing-time", "0ms"]).await;
    let admin = ["--redis-url", url.as_str(), "--topic", "weather"];
    let command = |verb: &'static str| [&["dead-letters", verb][..], &admin[..]].concat();
    let mut listed = String::new();
    for _ in 0..50 {
        listed = run_to_end(&command("list")).await;
        if listed.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(worker);

    // Act and assert: list shows the reason, replay by id puts one back,
    // purge removes the other.
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{listed}");
    assert_eq!(letters[0]["code"], "missing_field");
    assert!(letters[0]["reason"].as_str().unwrap().contains("`v`"));

    let first = letters[0]["id"].as_str().unwrap();
    let mut replay = command("replay");
    replay.extend(["--id", first]);
    let replayed = run_to_end(&replay).await;
    assert!(replayed.contains("replayed 1"), "{replayed}");
    assert_eq!(run_to_end(&command("list")).await.lines().count(), 1);

    let purged = run_to_end(&command("purge")).await;
    assert!(purged.contains("purged 1"), "{purged}");
    assert!(run_to_end(&command("list")).await.is_empty());
}

#[tokio::test]
async fn the_exporter_serves_the_metrics_two_workers_flushed_to_redis() {
    let client = helpers::http_client();
    let redis = holdfast_testkit::redis().await;
    let flush = ["--metrics-flush-interval", "200ms"];
    let mut a = spawn_worker(&client, &redis, "sink-a", &flush).await;
    let b = spawn_worker(&client, &redis, "sink-b", &flush).await;
    let redis_url = redis.url();
    let exporter = helpers::start_until_ready(&client, || {
        let port = holdfast_testkit::free_port();
        let listen = format!("127.0.0.1:{port}");
        let command = helpers::holdfast_command(&[
            "exporter",
            "--redis-url",
            &redis_url,
            "--listen",
            &listen,
        ]);
        helpers::Process::spawn("exporter", command, port, Some(port))
    })
    .await;
    let url = format!("http://127.0.0.1:{}/metrics", exporter.admin_port);

    // Each worker's gauge of its terminals, under its own instance label.
    let terminals = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("holdfast_worker_terminals{") && l.contains("instance="))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        if terminals(&text) == 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(terminals(&text), 2, "both instances' gauges:\n{text}");
    assert!(text.contains("holdfast_redis_up 1"), "{text}");
    assert!(
        text.contains("# TYPE holdfast_worker_terminals gauge"),
        "{text}"
    );

    // SIGTERM: the worker's last flush happens before it exits.
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(a.exit_status(Duration::from_secs(10)).await.success());
    drop(b);
}
