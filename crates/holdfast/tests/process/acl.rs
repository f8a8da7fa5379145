//! Every role under exactly the ACL rules docs/redis-acl.md documents,
//! against a real redis-server: the rules are read from that page, so the
//! page and what works cannot drift apart.

use std::time::Duration;

use holdfast_testkit::LocalRedis;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{Process, holdfast_command, http_client, post_forecast, spawn_role};

const PASSWORD: &str = "acl-test-password";

/// The `ACL SETUSER` lines of docs/redis-acl.md, as argument lists.
fn documented_rules() -> Vec<Vec<String>> {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/redis-acl.md"
    ))
    .expect("docs/redis-acl.md");
    let block = page
        .split("```acl\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an ```acl block in docs/redis-acl.md");
    block
        .lines()
        .filter(|line| line.starts_with("ACL SETUSER "))
        .map(|line| {
            line.split_whitespace()
                .map(|word| word.replace("PASSWORD", PASSWORD))
                .collect()
        })
        .collect()
}

async fn admin(redis: &LocalRedis) -> holdfast_redis::redis::aio::MultiplexedConnection {
    holdfast_redis::redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

fn url_of(user: &str, redis: &LocalRedis) -> String {
    format!("redis://{user}:{PASSWORD}@127.0.0.1:{}/", redis.port())
}

/// Starts `holdfast ROLE` as `user` with `args`, on fresh ports.
async fn role(
    client: &reqwest::Client,
    redis: &LocalRedis,
    role: &'static str,
    user: &str,
    args: &[&str],
) -> Process {
    spawn_role(client, role, &url_of(user, redis), args).await
}

async fn get_json(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_role_works_under_its_documented_acl_and_names_a_missing_command() {
    // Arrange: the documented users on a server of the test's own.
    let client = http_client();
    let redis = holdfast_testkit::redis().await;
    let mut conn = admin(&redis).await;
    let rules = documented_rules();
    assert_eq!(rules.len(), 5, "five roles in docs/redis-acl.md");
    for rule in &rules {
        let mut cmd = holdfast_redis::redis::cmd(&rule[0]);
        for word in &rule[1..] {
            cmd.arg(word);
        }
        let applied: Result<(), _> = cmd.query_async(&mut conn).await;
        applied.unwrap_or_else(|e| panic!("{} refused: {e}", rule.join(" ")));
    }
    let scratch = tempfile::tempdir().expect("a directory for the database");
    let db = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("acl.db").display()
    );
    let worker = role(
        &client,
        &redis,
        "worker",
        "holdfast-worker",
        &["--consumer-name", "acl-worker"],
    )
    .await;
    let ingress = role(&client, &redis, "ingress", "holdfast-ingress", &[]).await;
    let api = role(
        &client,
        &redis,
        "api",
        "holdfast-api",
        &["--database-url", &db, "--warm-products", "5"],
    )
    .await;
    let exporter = role(&client, &redis, "exporter", "holdfast-exporter", &[]).await;
    let dashboard = role(&client, &redis, "dashboard", "holdfast-dashboard", &[]).await;
    let ingress_port = ingress.port.expect("ingress port");
    let api_base = format!("http://127.0.0.1:{}", api.port.expect("api port"));

    // Act and assert: calls and jobs.
    let call = post_forecast(&client, ingress_port, "Oslo", 5_000)
        .await
        .expect("a call");
    assert_eq!(
        call.status(),
        StatusCode::OK,
        "{}",
        call.text().await.unwrap_or_default()
    );
    let job: Value = client
        .post(format!("http://127.0.0.1:{ingress_port}/jobs/weather"))
        .json(&json!({"city": "Lima", "location": "Centro"}))
        .send()
        .await
        .expect("a job")
        .json()
        .await
        .expect("job JSON");
    let id = job["id"].as_str().expect("a job id").to_owned();
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = get_json(
            &client,
            &format!("http://127.0.0.1:{ingress_port}/jobs/weather/{id}"),
        )
        .await;
        if status["status"] == "done" {
            break;
        }
        assert!(Instant::now() < give_up, "the job never finished: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The cache: a read fills it, the next one is a hit, an update
    // invalidates it.
    let _ = client
        .get(format!("{api_base}/api/products/42"))
        .send()
        .await
        .expect("a read");
    let hit = client
        .get(format!("{api_base}/api/products/42"))
        .send()
        .await
        .expect("a read");
    assert_eq!(
        hit.headers()["x-cache"],
        "HIT",
        "the api's cache works under its ACL"
    );
    let api_health: Value = api.health(&client).await;
    assert_eq!(api_health["redis"]["state"], "ready", "{api_health}");

    // The exporter: the workers' flushed metrics, merged, and the topic.
    let give_up = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let text = client
            .get(format!("http://127.0.0.1:{}/metrics", exporter.admin_port))
            .send()
            .await
            .expect("a scrape")
            .text()
            .await
            .expect("text");
        if text.contains("holdfast_worker_handled_total") && text.contains("holdfast_topic_length")
        {
            break text;
        }
        assert!(
            Instant::now() < give_up,
            "the exporter never saw the metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(metrics.contains("holdfast_redis_up 1"), "{metrics}");

    // The dashboard and the dead letters: one written by hand, listed and
    // replayed under the dashboard's user.
    let _: String = holdfast_redis::redis::cmd("XADD")
        .arg(crate::helpers::WEATHER_REQUEST_STREAM)
        .arg("*")
        .arg("garbage")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let dashboard_base = format!("http://127.0.0.1:{}", dashboard.admin_port);
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, letters) = get_json(
            &client,
            &format!("{dashboard_base}/api/dashboard/topics/weather/dead-letters"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{letters}");
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        assert!(Instant::now() < give_up, "no dead letter listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, state) =
            get_json(&client, &format!("{dashboard_base}/api/dashboard/state")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            state["registry_fresh"], true,
            "the registry is readable: {state}"
        );
        if state["instances"].as_array().map(Vec::len) == Some(5) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "not every role registered itself: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let replay = holdfast_command(&[
        "dead-letters",
        "replay",
        "--redis-url",
        &url_of("holdfast-dashboard", &redis),
    ])
    .output()
    .await
    .expect("the CLI ran");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );

    // One permission taken away: the error names the command, and a call
    // whose script needs it says it is the ACL.
    for rule in ["-hgetall", "-xadd"] {
        let _: () = holdfast_redis::redis::cmd("ACL")
            .arg("SETUSER")
            .arg("holdfast-ingress")
            .arg(rule)
            .query_async(&mut conn)
            .await
            .expect("ACL SETUSER");
    }
    let (status, problem) = get_json(
        &client,
        &format!("http://127.0.0.1:{ingress_port}/jobs/weather/{id}"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["code"], "redis_refused", "{problem}");
    let detail = problem["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("'hgetall'"),
        "the problem names the command: {problem}"
    );
    let refused = post_forecast(&client, ingress_port, "Oslo", 5_000)
        .await
        .expect("a call");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = refused.json().await.unwrap_or(Value::Null);
    assert_eq!(problem["code"], "redis_refused", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("can't run this command")),
        "Redis's own words are in the problem: {problem}"
    );
    drop((worker, exporter));
}
