//! Durability per request, against real servers: `replicas:N` waits for a
//! real replica, `fsync` is had from `appendfsync always` (Redis 7.0 has no
//! WAITAOF) and refused with a clear error where it cannot be had; the
//! level reached comes back in the `Holdfast-Durability` header and in the
//! job's record.

use std::time::Duration;

use holdfast_testkit::sentinel::replica_of;
use holdfast_testkit::{LocalRedis, LocalRedisOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{holdfast_command, http_client, spawn_ingress_with, spawn_worker};

async fn post(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    durability: &str,
) -> reqwest::Response {
    client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("holdfast-durability", durability)
        .json(&json!({"city": "Oslo", "location": "Sentrum"}))
        .send()
        .await
        .expect("an answer")
}

fn reached(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("holdfast-durability")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The record of the job that `accepted` (its 202) names.
async fn record_of(client: &reqwest::Client, port: u16, accepted: reqwest::Response) -> Value {
    let id = accepted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .get(format!("http://127.0.0.1:{port}/jobs/weather/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_are_waited_for_and_the_level_reached_is_reported() {
    // Arrange: a primary with one replica.
    let client = http_client();
    let primary = LocalRedis::start(LocalRedisOptions::default())
        .await
        .expect("a primary");
    let _replica = replica_of(&primary, LocalRedisOptions::default()).await;
    let _worker = spawn_worker(&client, &primary, "durable-worker", &[]).await;
    let ingress = spawn_ingress_with(&client, &primary, &[]).await;
    let port = ingress.port.expect("ingress port");
    // Act and assert: a call and a job at replicas:1.
    let call = post(&client, port, "/WeatherForecast/city", "replicas:1").await;
    assert_eq!(call.status(), StatusCode::OK);
    assert_eq!(reached(&call), "replicas:1");
    let job = post(&client, port, "/jobs/weather", "replicas:1").await;
    assert_eq!(job.status(), StatusCode::ACCEPTED);
    assert_eq!(reached(&job), "replicas:1");
    let record = record_of(&client, port, job).await;
    assert_eq!(record["durability"], "replicas:1", "{record}");

    // More replicas than there are: the wait runs to its timeout (1 s) and
    // the level reached says so; meanwhile other requests are not held up
    // behind it.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { post(&client, port, "/jobs/weather", "replicas:2").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let beside = post(&client, port, "/WeatherForecast/city", "none").await;
    let beside_took = started.elapsed();
    assert_eq!(beside.status(), StatusCode::OK);
    assert!(
        beside_took < Duration::from_millis(600),
        "a call beside a durable wait took {beside_took:?}"
    );
    let two = waiting.await.expect("the durable job");
    assert_eq!(two.status(), StatusCode::ACCEPTED);
    assert_eq!(reached(&two), "replicas:1");
    // Right after a wait fell short, the next request at that level does
    // not hold a connection for another second: it is queued and reports
    // the level it reached without waiting.
    let started = Instant::now();
    let unwaited = post(&client, port, "/jobs/weather", "replicas:2").await;
    let unwaited_took = started.elapsed();
    assert_eq!(unwaited.status(), StatusCode::ACCEPTED);
    assert_eq!(reached(&unwaited), "none");
    assert!(
        unwaited_took < Duration::from_millis(500),
        "a request right after a short wait took {unwaited_took:?}"
    );
    let unwaited_record = record_of(&client, port, unwaited).await;
    assert_eq!(unwaited_record["durability"], "none", "{unwaited_record}");
    let none = post(&client, port, "/WeatherForecast/city", "none").await;
    assert_eq!(reached(&none), "none");
    let bad = post(&client, port, "/jobs/weather", "replicas:x").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fsync_comes_from_appendfsync_always_and_is_refused_where_it_cannot_be_had() {
    let client = http_client();

    // appendfsync always: every write is on disk before Redis answers.
    let always = LocalRedis::start(LocalRedisOptions {
        aof: true,
        appendfsync: Some("always".into()),
        ..LocalRedisOptions::default()
    })
    .await
    .expect("a redis-server with appendfsync always");
    let _worker = spawn_worker(&client, &always, "fsync-worker", &[]).await;
    let ingress = spawn_ingress_with(&client, &always, &["--durability", "fsync"]).await;
    let port = ingress.port.expect("ingress port");
    let job = post(&client, port, "/jobs/weather", "fsync").await;
    assert_eq!(job.status(), StatusCode::ACCEPTED);
    assert_eq!(reached(&job), "fsync");

    // No AOF and no WAITAOF (Redis 7.0): refused per request...
    let plain = LocalRedis::start(LocalRedisOptions::default())
        .await
        .expect("a plain redis-server");
    let ingress = spawn_ingress_with(&client, &plain, &[]).await;
    let port = ingress.port.expect("ingress port");
    let refused = post(&client, port, "/jobs/weather", "fsync").await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "durability_unavailable", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("WAITAOF")),
        "{problem}"
    );

    // ...and at start, for an ingress configured with it.
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        holdfast_command(&[
            "ingress",
            "--redis-url",
            &plain.url(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--durability",
            "fsync",
        ])
        .output(),
    )
    .await
    .expect("the ingress exits")
    .expect("the ingress ran");
    assert!(
        !output.status.success(),
        "an ingress that cannot have fsync does not start"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fsync"), "{stderr}");
}
