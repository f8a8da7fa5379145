//! The ingress and a worker on a Sentinel URL, as processes: the primary is
//! killed during a stream of calls, the sentinels promote the replica, and
//! calls succeed again without any restart.

use std::time::Duration;

use holdfast_testkit::sentinel::DOWN_AFTER;
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::helpers::{http_client, post_forecast, spawn_role};

#[tokio::test]
async fn calls_succeed_again_after_a_sentinel_failover_without_a_restart() {
    // Arrange
    let client = http_client();
    let mut setup = holdfast_testkit::sentinel::start().await;
    let url = setup.url();
    let _worker = spawn_role(
        &client,
        "worker",
        &url,
        &["--consumer-name", "sentinel-worker"],
    )
    .await;
    let ingress = spawn_role(&client, "ingress", &url, &[]).await;
    let port = ingress.port.expect("ingress port");
    let before = post_forecast(&client, port, "Oslo", 3_000)
        .await
        .expect("a call");
    assert_eq!(before.status(), StatusCode::OK);

    // Act: the primary dies.
    let killed_at = Instant::now();
    setup.primary.kill9().await;

    // Assert: within the failover time plus a few seconds, calls succeed.
    let give_up = killed_at + DOWN_AFTER + Duration::from_secs(12);
    let mut refused = 0;
    loop {
        let answer = post_forecast(&client, port, "Lima", 3_000)
            .await
            .expect("an answer");
        if answer.status() == StatusCode::OK {
            break;
        }
        // Every failure meanwhile is explicit: problem+json, never a hang.
        assert!(answer.status().is_server_error(), "{}", answer.status());
        refused += 1;
        assert!(
            Instant::now() < give_up,
            "calls still fail {:?} after the primary was killed; the sentinels say the primary is on {:?}",
            killed_at.elapsed(),
            setup.primary_port().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "calls succeed again {:?} after the primary was killed ({refused} refused meanwhile)",
        killed_at.elapsed()
    );
    assert_eq!(setup.primary_port().await, Some(setup.replica.port()));
    let health = ingress.health(&client).await;
    let history = health["redis"]["history"].to_string();
    assert!(history.contains("failover: "), "{health:#}");
}
