//! A caller's own deadline against Redis's budget, on a real redis-server:
//! running out of the first says nothing about Redis, so it never counts
//! against the breaker, and never takes the breaker's one probe.

use std::time::Duration;

use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::Tasks;
use holdfast_testkit::quick_redis_config;
use tokio::time::Instant;

/// A handle on a private server, ready, with a breaker that opens after
/// two failures for 100 ms.
async fn ready_redis(tasks: &Tasks) -> (holdfast_testkit::LocalRedis, Redis) {
    let server = holdfast_testkit::redis().await;
    let mut cfg = quick_redis_config(server.url());
    cfg.breaker.failure_threshold = 2;
    cfg.breaker.open_for = Duration::from_millis(100);
    let redis = Redis::start(cfg, tasks).expect("valid settings");
    assert!(redis.wait_ready(Duration::from_secs(5)).await);
    (server, redis)
}

/// A command that takes `ms` milliseconds to answer: a blocking pop of a
/// list nobody pushes to.
async fn sleep_on_server(redis: &Redis, deadline: Instant, ms: u64) -> Result<(), RedisError> {
    let budget = redis.config().command_timeout;
    redis
        .run_before(deadline, budget, |mut conn| async move {
            redis::cmd("BLPOP")
                .arg("deadlines:nobody-pushes")
                .arg(ms as f64 / 1000.0)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
}

#[tokio::test]
async fn a_callers_deadline_running_out_is_not_a_redis_failure() {
    let tasks = Tasks::new();
    let (_server, redis) = ready_redis(&tasks).await;
    for _ in 0..5 {
        let deadline = Instant::now() + Duration::from_millis(20);
        let err = sleep_on_server(&redis, deadline, 60).await.unwrap_err();
        assert!(matches!(err, RedisError::CallerDeadline), "{err:?}");
    }
    assert_eq!(
        redis.health().breaker,
        "closed",
        "five in a row, threshold two"
    );
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_caller_in_a_hurry_never_takes_the_breakers_probe() {
    let tasks = Tasks::new();
    let (_server, redis) = ready_redis(&tasks).await;
    redis.breaker().force_open();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The breaker is due for a probe: a caller with 20 ms left does not get
    // it, and hands it back untouched.
    let deadline = Instant::now() + Duration::from_millis(20);
    let err = sleep_on_server(&redis, deadline, 60).await.unwrap_err();
    assert!(matches!(err, RedisError::CircuitOpen { .. }), "{err:?}");
    // A caller with Redis's whole budget takes it, and closes the breaker.
    let pong: String = redis.cmd(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(redis.health().breaker, "closed");
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}
