//! `holdfast dashboard` as its own process, watching roles that are
//! processes too: an instance killed with SIGKILL, many open pages, closed
//! event streams, and Redis gone.

use std::time::Duration;

use holdfast_testkit::free_port;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use crate::helpers::{Process, holdfast_command, http_client, spawn_worker, start_until_ready};

/// Starts `holdfast dashboard` on `redis_url` and waits until it is ready.
async fn spawn_dashboard(client: &reqwest::Client, redis_url: &str) -> Process {
    start_until_ready(client, || {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let command =
            holdfast_command(&["dashboard", "--listen", &listen, "--redis-url", redis_url]);
        Process::spawn("dashboard", command, port, Some(port))
    })
    .await
}

async fn json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// CPU time (user and system) the process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    ticks / 100.0
}

#[tokio::test]
async fn the_dashboard_sees_a_killed_instance_serves_many_pages_cheaply_and_loads_without_redis() {
    // Arrange: a worker and a dashboard, each its own process, on one Redis.
    let client = http_client();
    let mut redis = holdfast_testkit::redis().await;
    let mut worker = spawn_worker(&client, &redis, "worker-1", &[]).await;
    let dashboard = spawn_dashboard(&client, &redis.url()).await;
    let base = format!("http://127.0.0.1:{}", dashboard.admin_port);
    let state_url = format!("{base}/api/dashboard/state");
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let state = json(&client, &state_url).await;
        let ready = state["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["role"] == "worker" && i["healthy"] == true);
        if ready {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the worker was never shown: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A SIGKILLed instance is shown down within 5 s (its registry entry
    // stays until it expires, so the dashboard must notice by itself).
    worker.kill9().await;
    let killed = Instant::now();
    loop {
        let state = json(&client, &state_url).await;
        let down = state["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["role"] == "worker" && i["reachable"] == false && i["healthy"] == false);
        if down {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the killed worker is still shown up: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fifty open pages: fifty event streams, measured in CPU time of the
    // dashboard process.
    let pid = dashboard.pid_u32();
    let mut streams = Vec::new();
    for _ in 0..50 {
        let response = client
            .get(format!("{base}/api/dashboard/events"))
            .send()
            .await
            .expect("an event stream");
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(response);
    }
    let health = json(&client, &format!("{base}/health")).await;
    assert_eq!(health["event_streams"], 50, "{health:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_before, wall) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let share = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    eprintln!(
        "50 open event streams: the dashboard used {:.2} % of a core",
        share * 100.0
    );
    assert!(
        share < 0.05,
        "50 open dashboards cost {:.1} % of a core",
        share * 100.0
    );

    // Closed streams free what they held.
    drop(streams);
    let closed = Instant::now();
    loop {
        let health = json(&client, &format!("{base}/health")).await;
        if health["event_streams"] == 0 {
            break;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(3),
            "closed event streams are still counted: {health:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // With Redis gone the dashboard still loads, with what it knew.
    redis.stop().await;
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("the overview");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("HTML");
    assert!(html.contains("registry not readable"), "{html}");
    assert!(
        html.contains("worker-"),
        "the last instances known are shown: {html}"
    );
    let state = json(&client, &state_url).await;
    assert_ne!(state["redis"], "ready", "{state:#}");
}
