//! Redis Cluster for real: three primaries with a replica each, of the
//! test's own. The handle sends each command to its key's node, splits a
//! pipeline that spans slots and answers in order, scans every primary,
//! and carries on when a replica takes over from a killed primary.

use std::collections::BTreeSet;
use std::time::Duration;

use holdfast_redis::{ConnState, Redis};
use holdfast_resilience::Tasks;
use holdfast_testkit::cluster::{NODE_TIMEOUT, TestCluster};
use holdfast_testkit::quick_redis_config;
use tokio::time::Instant;

/// Keys whose slots fall on each of the three primaries of an evenly split
/// cluster (slots 0-5460, 5461-10922, 10923-16383): `{orders:2}` is in
/// slot 448, `{orders:0}` in 8578, `{orders:1}` in 12707.
const SPREAD: [&str; 3] = ["{orders:2}:k", "{orders:0}:k", "{orders:1}:k"];

async fn ready(cluster: &TestCluster, tasks: &Tasks) -> Redis {
    let redis = Redis::start(quick_redis_config(cluster.url()), tasks).expect("a cluster URL");
    assert!(
        redis.wait_ready(Duration::from_secs(10)).await,
        "{:?}",
        redis.health()
    );
    redis
}

#[tokio::test]
async fn commands_pipelines_and_scans_reach_every_primary() {
    // Arrange
    let cluster = holdfast_testkit::cluster::start(3, 1).await;
    let tasks = Tasks::new();
    let redis = ready(&cluster, &tasks).await;
    assert!(redis.is_cluster());
    let mut nodes = BTreeSet::new();
    for key in SPREAD {
        nodes.insert(cluster.node_of(key).await.expect("a node serves the key"));
    }
    assert_eq!(
        nodes.len(),
        3,
        "the keys are meant to be on three primaries"
    );

    // Act: one pipeline over three slots, with a keyless command in it.
    let mut pipe = redis::pipe();
    for (n, key) in SPREAD.iter().enumerate() {
        pipe.cmd("SET").arg(*key).arg(n).ignore();
    }
    pipe.cmd("PING");
    for key in SPREAD {
        pipe.cmd("GET").arg(key);
    }
    let answers: (String, String, String, String) = redis
        .pipe(&pipe, Duration::from_secs(2))
        .await
        .expect("a pipeline across slots");

    // Assert: answers come back in the order asked.
    assert_eq!(answers, ("PONG".into(), "0".into(), "1".into(), "2".into()));
    // A cache invalidation: delete, then announce on a channel of another
    // slot; a subscriber hears it after the key is gone.
    let info = redis.connection_info().expect("a seed node");
    let subscriber = redis::Client::open(info).expect("a client");
    let mut pubsub = subscriber.get_async_pubsub().await.expect("a subscriber");
    pubsub
        .subscribe("hf:cache:invalidate:test")
        .await
        .expect("subscribed");
    let mut invalidate = redis::pipe();
    invalidate
        .cmd("DEL")
        .arg(SPREAD[1])
        .ignore()
        .cmd("PUBLISH")
        .arg("hf:cache:invalidate:test")
        .arg(SPREAD[1]);
    let heard: i64 = redis
        .pipe::<(i64,)>(&invalidate, Duration::from_secs(2))
        .await
        .expect("a delete and an announcement")
        .0;
    assert!(heard >= 1, "the subscriber is counted");
    let message = tokio::time::timeout(Duration::from_secs(2), async {
        use futures_util::StreamExt;
        pubsub.on_message().next().await
    })
    .await
    .expect("the announcement arrives")
    .expect("a message");
    assert_eq!(message.get_payload::<String>().unwrap(), SPREAD[1]);
    let gone: Option<String> = redis
        .cmd(redis::cmd("GET").arg(SPREAD[1]))
        .await
        .expect("a read");
    assert!(gone.is_none());

    let mut found = redis
        .scan("{orders:*", 100, 1000, Duration::from_secs(2))
        .await
        .expect("a scan of every primary");
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 2, "the keys left, on two primaries: {found:?}");
    let info = redis.info(Some("server")).await.expect("INFO of one node");
    assert!(info.contains("redis_version:"), "{info}");
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn work_continues_after_a_replica_takes_over_from_a_killed_primary() {
    // Arrange
    let mut cluster = holdfast_testkit::cluster::start(3, 1).await;
    let tasks = Tasks::new();
    let redis = ready(&cluster, &tasks).await;
    let victim = cluster.node_of(SPREAD[0]).await.expect("a node");
    let _: () = redis
        .cmd(redis::cmd("SET").arg(SPREAD[0]).arg("before"))
        .await
        .expect("a write");
    // Replication is asynchronous: only a write the replica acknowledged
    // (WAIT, what durability replicas:1 does) survives the kill for sure.
    let acked: i64 = redis
        .run(Duration::from_secs(2), |mut conn| async move {
            let mut wait = redis::cmd("WAIT");
            wait.arg(1).arg(1000);
            redis::from_redis_value(conn.on_node_of(SPREAD[0], &wait).await?)
                .map_err(redis::RedisError::from)
        })
        .await
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let _: () = redis
        .cmd(redis::cmd("SET").arg(SPREAD[1]).arg("elsewhere"))
        .await
        .expect("a write");

    // Act
    let killed_at = Instant::now();
    cluster.nodes[victim].kill9().await;

    // Assert: a key on another primary answers before any replica has
    // taken over (the node timeout alone is 1 s).
    let other: Option<String> = redis
        .cmd(redis::cmd("GET").arg(SPREAD[1]))
        .await
        .expect("another primary answers while one is down");
    assert_eq!(other.as_deref(), Some("elsewhere"));
    assert!(
        killed_at.elapsed() < NODE_TIMEOUT,
        "answered {:?} after the kill",
        killed_at.elapsed()
    );

    // Assert: within the node timeout, the election and a few seconds,
    // the key's slot is written again, and the write before the kill (AOF
    // always, replica linked) is still there.
    let give_up = killed_at + NODE_TIMEOUT + Duration::from_secs(12);
    let kept = loop {
        let read = redis::cmd("GET").arg(SPREAD[0]).clone();
        if redis.state() == ConnState::Ready
            && let Ok(value) = redis.cmd::<Option<String>>(&read).await
        {
            break value;
        }
        assert!(
            Instant::now() < give_up,
            "no answer since the primary was killed; health {:?}",
            redis.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "answers again {:?} after the primary was killed",
        killed_at.elapsed()
    );
    assert_eq!(kept.as_deref(), Some("before"), "the replica had the write");
    let _: () = redis
        .cmd(redis::cmd("SET").arg(SPREAD[0]).arg("after"))
        .await
        .expect("a write to the new primary");
    assert!(
        cluster.nodes[victim].pid().is_none(),
        "the old primary is dead: the answers came from the replica that took over"
    );
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}
