//! Redis Sentinel for real: a primary, a replica and three sentinels of the
//! test's own. The handle finds the primary through the sentinels, and
//! when the primary is killed it follows the failover by itself, recording
//! it in its history with the old and the new address.

use std::time::Duration;

use holdfast_redis::{ConnState, Redis};
use holdfast_resilience::Tasks;
use holdfast_testkit::quick_redis_config;
use holdfast_testkit::sentinel::DOWN_AFTER;
use tokio::time::Instant;

#[tokio::test]
async fn the_handle_follows_a_failover_to_the_promoted_replica() {
    // Arrange
    let mut setup = holdfast_testkit::sentinel::start().await;
    let tasks = Tasks::new();
    let redis = Redis::start(quick_redis_config(setup.url()), &tasks).expect("a sentinel URL");
    assert!(
        redis.wait_ready(Duration::from_secs(5)).await,
        "{:?}",
        redis.health()
    );
    let set = || redis::cmd("SET").arg("k").arg("before").clone();
    let _: () = redis.cmd(&set()).await.expect("a write to the primary");

    // Act: the primary dies.
    let killed_at = Instant::now();
    setup.primary.kill9().await;

    // Assert: within the sentinels' failover time plus 2 s, writes go to
    // the promoted replica.
    let replica = setup.replica.port();
    let give_up = killed_at + DOWN_AFTER + Duration::from_secs(10);
    loop {
        let write = redis::cmd("SET").arg("k").arg("after").clone();
        if redis.state() == ConnState::Ready && redis.cmd::<()>(&write).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "no write since the failover; health {:?}; sentinels say the primary is on {:?}; logs {:?}",
            redis.health(),
            setup.primary_port().await,
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "writes again {:?} after the primary was killed",
        killed_at.elapsed()
    );
    assert_eq!(setup.primary_port().await, Some(replica));
    let history = redis.health().history;
    let failover = history
        .iter()
        .find(|t| t.reason.starts_with("failover: "))
        .unwrap_or_else(|| panic!("no failover in the history: {history:?}"));
    assert!(
        failover
            .reason
            .ends_with(&format!("-> 127.0.0.1:{replica}")),
        "{failover:?}"
    );
    let value: String = redis
        .cmd(&redis::cmd("GET").arg("k").clone())
        .await
        .expect("a read");
    assert_eq!(value, "after");
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_switch_master_notice_moves_the_handle_before_the_old_primary_fails() {
    // Arrange: a handle on the primary, which stays up throughout.
    let setup = holdfast_testkit::sentinel::start().await;
    let tasks = Tasks::new();
    let redis = Redis::start(quick_redis_config(setup.url()), &tasks).expect("a sentinel URL");
    assert!(redis.wait_ready(Duration::from_secs(5)).await);
    // The subscription to +switch-master is made in the background.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Act: a failover by hand; the old primary becomes a replica and keeps
    // answering.
    let sentinel = redis::Client::open(setup.sentinel_urls()[0].as_str()).expect("a URL");
    let mut conn = sentinel
        .get_multiplexed_async_connection()
        .await
        .expect("a sentinel");
    let asked_at = Instant::now();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(holdfast_testkit::sentinel::MASTER)
        .query_async(&mut conn)
        .await
        .expect("a failover");

    // Assert: the handle records the move to the replica without a single
    // command having failed on the old primary.
    let replica = setup.replica.port();
    // Without the notice the handle would stay on the demoted server until
    // something failed there (over 10 s when this was written).
    let give_up = asked_at + Duration::from_secs(5);
    loop {
        let moved = redis.health().history.iter().any(|t| {
            t.reason.starts_with("failover: ") && t.reason.ends_with(&format!(":{replica}"))
        });
        if moved {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the handle did not follow the switch: {:?}",
            redis.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "followed the switch {:?} after SENTINEL FAILOVER",
        asked_at.elapsed()
    );
    let _: () = redis
        .cmd(&redis::cmd("SET").arg("k").arg("on the new primary").clone())
        .await
        .expect("a write to the new primary");
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}
