//! The roles on a Redis Cluster, as processes: a topic of three partitions
//! whose streams live on the three primaries, calls and jobs through all of
//! them, the exporter showing every partition, and work that continues
//! after a primary is killed and its replica takes over.

use std::collections::BTreeSet;
use std::time::Duration;

use holdfast_testkit::cluster::NODE_TIMEOUT;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{http_client, spawn_role};

/// `{orders:0}`, `{orders:1}` and `{orders:2}` hash to slots 8578, 12707
/// and 448: one on each primary of an evenly split three-primary cluster.
const TOPIC: &str = "orders";

async fn call(client: &reqwest::Client, port: u16, city: &str) -> reqwest::Response {
    client
        .post(format!("http://127.0.0.1:{port}/WeatherForecast/city"))
        .header("x-timeout-ms", "3000")
        .json(&json!({"city": city, "location": "Downtown"}))
        .send()
        .await
        .expect("an answer")
}

async fn job(client: &reqwest::Client, port: u16, city: &str) -> String {
    let accepted = client
        .post(format!("http://127.0.0.1:{port}/jobs/weather"))
        .json(&json!({"city": city, "location": "Downtown"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    accepted.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn wait_done(client: &reqwest::Client, port: u16, id: &str) {
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        let record: Value = client
            .get(format!("http://127.0.0.1:{port}/jobs/weather/{id}"))
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .unwrap_or(Value::Null);
        if record["status"] == "done" {
            return;
        }
        assert!(Instant::now() < give_up, "job {id} not done: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn calls_and_jobs_run_across_three_primaries_and_survive_a_killed_one() {
    // Arrange
    let client = http_client();
    let mut cluster = holdfast_testkit::cluster::start(3, 1).await;
    let url = cluster.url();
    let topic = ["--topic", TOPIC, "--partitions", "3"];
    let mut nodes = BTreeSet::new();
    for partition in 0..3 {
        let key = format!("hf:{{{TOPIC}:{partition}}}:req");
        nodes.insert(cluster.node_of(&key).await.expect("a node"));
    }
    assert_eq!(
        nodes.len(),
        3,
        "the partitions are meant to be on three primaries"
    );
    let _worker = spawn_role(
        &client,
        "worker",
        &url,
        &[&topic[..], &["--consumer-name", "cw"]].concat(),
    )
    .await;
    let ingress = spawn_role(&client, "ingress", &url, &topic).await;
    let exporter = spawn_role(&client, "exporter", &url, &[]).await;
    let port = ingress.port.expect("ingress port");

    // Act: calls and jobs, enough to reach every partition.
    for n in 0..30 {
        let answer = call(&client, port, &format!("City{n}")).await;
        assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.text().await);
    }
    let mut jobs = Vec::new();
    for n in 0..15 {
        jobs.push(job(&client, port, &format!("Town{n}")).await);
    }
    for id in &jobs {
        wait_done(&client, port, id).await;
    }

    // Assert: the exporter finds the streams on every primary.
    let metrics = client
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            exporter.port.expect("exporter port")
        ))
        .send()
        .await
        .expect("a scrape")
        .text()
        .await
        .expect("text");
    for partition in 0..3 {
        let series =
            format!("holdfast_topic_length{{topic=\"{TOPIC}\",partition=\"{partition}\"}}");
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }

    // Act: the primary of partition 0 dies.
    let victim = cluster
        .node_of(&format!("hf:{{{TOPIC}:0}}:req"))
        .await
        .expect("a node");
    let killed_at = Instant::now();
    cluster.nodes[victim].kill9().await;

    // Assert: every failure meanwhile is explicit (never a hang), and
    // within the node timeout plus a few seconds calls succeed again, on
    // every partition, without any restart.
    let give_up = killed_at + NODE_TIMEOUT + Duration::from_secs(15);
    let mut refused = 0;
    let mut in_a_row = 0;
    while in_a_row < 30 {
        let started = Instant::now();
        let answer = call(&client, port, "Lima").await;
        assert!(started.elapsed() < Duration::from_secs(5), "a call hung");
        if answer.status() == StatusCode::OK {
            in_a_row += 1;
            continue;
        }
        assert!(answer.status().is_server_error(), "{}", answer.status());
        in_a_row = 0;
        refused += 1;
        assert!(
            Instant::now() < give_up,
            "calls still fail {:?} after the primary was killed",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "30 calls in a row succeed {:?} after the primary was killed ({refused} refused meanwhile)",
        killed_at.elapsed()
    );
    let id = job(&client, port, "After").await;
    wait_done(&client, port, &id).await;
}
