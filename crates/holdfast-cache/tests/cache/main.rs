//! `ReadThrough` against a real redis-server: hits and misses, single
//! flight, fail-safe stale serving, negative caching, invalidation across
//! instances, and reads while Redis is killed and restarted.

mod helpers;

use std::time::{Duration, Instant};

use helpers::{CacheEnv, Loader, env, handle};
use holdfast_cache::{CacheConfig, CacheError, CacheState, ReadThrough, Source};
use holdfast_redis::redis;

#[tokio::test]
async fn a_miss_loads_once_and_the_next_read_is_a_hit() {
    let env = env().await;
    let cache = env.cache(env.config());
    let loader = Loader::new();

    let first = cache
        .get("1", loader.value("one".to_owned()))
        .await
        .unwrap();
    let second = cache
        .get("1", loader.value("other".to_owned()))
        .await
        .unwrap();

    assert_eq!(first.value.as_deref(), Some("one"));
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(second.value.as_deref(), Some("one"));
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.source, Source::Cache);
    assert_eq!(loader.calls(), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

#[tokio::test]
async fn a_hundred_concurrent_reads_of_a_cold_key_call_the_loader_once() {
    let env = env().await;
    let cache = env.cache(env.config());
    let loader = Loader::new();

    let reads = (0..100).map(|_| {
        let cache = cache.clone();
        let load = loader.with(Duration::from_millis(100), Ok(Some(42u32)));
        tokio::spawn(async move { cache.get("cold", load).await })
    });
    let mut answers = Vec::new();
    for read in reads.collect::<Vec<_>>() {
        answers.push(read.await.unwrap().unwrap());
    }

    assert_eq!(loader.calls(), 1);
    assert!(answers.iter().all(|a| a.value == Some(42)));
    let stats = cache.stats();
    assert_eq!(stats.misses + stats.hits, 100);
    assert!(stats.single_flight_joins >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_stale_key_whose_loader_fails_is_served_stale_within_max_stale_and_fails_past_it() {
    let env = env().await;
    let config = CacheConfig {
        max_stale: Duration::from_millis(600),
        ..env.config_with_ttl(Duration::from_millis(100))
    };
    let (cache, loader) = env.cache_holding(config, "k", 7).await;

    tokio::time::sleep(Duration::from_millis(250)).await;
    let stale = cache.get("k", loader.failing::<u32>()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let past = cache.get("k", loader.failing::<u32>()).await;

    assert_eq!(stale.value, Some(7));
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.source, Source::Stale);
    match past {
        Err(CacheError::Loader(err)) => assert!(err.is_retryable()),
        other => panic!("expected the loader error past max_stale, got {other:?}"),
    }
    assert_eq!(cache.stats().loader_errors, 2);
    assert_eq!(cache.stats().stale, 1);
}

#[tokio::test]
async fn a_slow_loader_on_a_stale_key_answers_stale_at_the_soft_timeout_and_refreshes_in_the_background()
 {
    let env = env().await;
    // The soft timeout is the test default: 100 ms.
    let config = env.config_with_ttl(Duration::from_millis(1000));
    let (cache, loader) = env.cache_holding(config, "k", 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    let stale = cache
        .get("k", loader.with(Duration::from_millis(300), Ok(Some(2u32))))
        .await
        .unwrap();
    let waited = started.elapsed();
    // The background load ends 200 ms later; its value is fresh for 1 s.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let refreshed = cache.get("k", loader.failing::<u32>()).await.unwrap();

    assert_eq!(stale.value, Some(1));
    assert_eq!(stale.x_cache(), "STALE");
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_millis(350),
        "stale answer took {waited:?}"
    );
    assert_eq!(refreshed.value, Some(2));
    assert_eq!(refreshed.x_cache(), "HIT");
    assert_eq!(loader.calls(), 2);
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl() {
    let env = env().await;
    let cache = env.cache(CacheConfig {
        negative_ttl: Duration::from_millis(200),
        max_stale: Duration::from_millis(100),
        ..env.config()
    });
    let loader = Loader::new();

    let first = cache
        .get("missing", loader.with::<u32>(Duration::ZERO, Ok(None)))
        .await
        .unwrap();
    let second = cache
        .get("missing", loader.with::<u32>(Duration::ZERO, Ok(None)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let after = cache
        .get("missing", loader.with::<u32>(Duration::ZERO, Ok(None)))
        .await
        .unwrap();

    assert_eq!((first.value, first.x_cache()), (None, "MISS"));
    assert_eq!((second.value, second.x_cache()), (None, "HIT"));
    assert_eq!((after.value, after.x_cache()), (None, "MISS"));
    assert_eq!(loader.calls(), 2);
    assert_eq!(cache.stats().negative_hits, 1);
}

#[tokio::test]
async fn invalidate_makes_the_next_read_load_again() {
    let env = env().await;
    let config = env.config_with_l1(Duration::from_secs(10));
    let (cache, loader) = env.cache_holding(config, "k", 1).await;

    cache.invalidate("k").await;
    let after = cache.get("k", loader.value(2u32)).await.unwrap();

    assert_eq!(after.value, Some(2));
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(loader.calls(), 2);
    let stored: Option<String> = env
        .redis
        .cmd(redis::cmd("GET").arg(cache.redis_key("k")))
        .await
        .unwrap();
    assert!(stored.is_some_and(|s| s.contains("\"v\":2")));
}

#[tokio::test]
async fn an_invalidate_on_one_instance_drops_the_other_instances_l1_entry() {
    let env = env().await;
    let cfg = env.config_with_l1(Duration::from_secs(30));
    let other_redis = handle(&env.server, &env.shutdown).await;
    let here = env.cache(cfg.clone());
    let there = ReadThrough::new(other_redis, "widgets", cfg);
    let _subscribers = (
        here.start(env.shutdown.clone()),
        there.start(env.shutdown.clone()),
    );
    let channel = format!("{}:cache:invalidate:widgets", env.prefix);
    holdfast_testkit::wait_until(Duration::from_secs(5), "both instances subscribe", || {
        let redis = env.redis.clone();
        let channel = channel.clone();
        async move {
            let counts: Vec<(String, u64)> = redis
                .cmd(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
                .await
                .unwrap_or_default();
            counts.first().is_some_and(|(_, n)| *n == 2)
        }
    })
    .await;
    let loader = Loader::new();
    here.get("k", loader.value(1u32)).await.unwrap();
    let cached_there = there.get("k", loader.value(1u32)).await.unwrap();
    assert_eq!(cached_there.x_cache(), "HIT");

    here.invalidate("k").await;

    holdfast_testkit::wait_until(Duration::from_secs(2), "the other instance reloads", || {
        let there = there.clone();
        let load = loader.value(2u32);
        async move { there.get("k", load).await.unwrap().value == Some(2) }
    })
    .await;
}

#[tokio::test]
async fn with_redis_killed_reads_answer_from_the_loader_quickly_and_the_cache_returns_after_restart()
 {
    let mut env = env().await;
    let (cache, loader) = env.cache_holding(env.config(), "k", 1).await;
    assert_eq!(cache.state(), CacheState::Ready);

    env.server.kill9().await;
    let mut slowest = Duration::ZERO;
    let mut answers = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        answers.push(cache.get("k", loader.value(1u32)).await.unwrap());
        slowest = slowest.max(started.elapsed());
    }
    let state_while_down = cache.state();
    let bypassed_while_down = cache.stats().bypass;
    env.server.restart().await.unwrap();
    let restarted = Instant::now();
    holdfast_testkit::wait_until(Duration::from_secs(3), "reads are cache hits again", || {
        let cache = cache.clone();
        let load = loader.value(1u32);
        async move { cache.get("k", load).await.unwrap().x_cache() == "HIT" }
    })
    .await;

    assert!(
        answers
            .iter()
            .all(|a| a.x_cache() == "BYPASS" && a.value == Some(1))
    );
    assert!(
        slowest < Duration::from_millis(100),
        "slowest read took {slowest:?}"
    );
    assert_eq!(state_while_down, CacheState::Degraded);
    assert_eq!(bypassed_while_down, 50);
    assert!(restarted.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn keys_written_together_get_different_ttls_within_the_jitter() {
    let env = env().await;
    let cache = env.cache(CacheConfig {
        ttl: Duration::from_secs(100),
        ttl_jitter: 0.1,
        max_stale: Duration::from_secs(10),
        ..env.config()
    });
    let loader = Loader::new();

    let mut ttls = Vec::new();
    for key in ["a", "b", "c"] {
        cache.get(key, loader.value(1u32)).await.unwrap();
        let pttl: i64 = env
            .redis
            .cmd(redis::cmd("PTTL").arg(cache.redis_key(key)))
            .await
            .unwrap();
        // Redis keeps each key max_stale past its freshness.
        ttls.push(pttl - 10_000);
    }

    assert!(
        ttls.iter().all(|t| (89_000..=110_000).contains(t)),
        "{ttls:?}"
    );
    assert!(ttls[0] != ttls[1] || ttls[1] != ttls[2], "{ttls:?}");
}

#[tokio::test]
async fn an_invalidation_made_while_redis_is_down_is_replayed_when_it_returns() {
    // With AOF, the restarted Redis still holds the copy from before the
    // write: exactly the copy the invalidation should have removed.
    let mut env = helpers::env_on(holdfast_testkit::redis_with_aof().await).await;
    let cache = env.cache(env.config());
    let loader = Loader::new();
    assert_eq!(
        cache.get("k", loader.value(1u32)).await.unwrap().x_cache(),
        "MISS"
    );
    assert_eq!(
        cache.get("k", loader.value(1u32)).await.unwrap().x_cache(),
        "HIT"
    );

    env.server.kill9().await;
    // The write happens in the database; its invalidation cannot reach Redis.
    cache.invalidate("k").await;
    env.server.restart().await.unwrap();
    assert!(env.redis.wait_ready(Duration::from_secs(5)).await);

    // The next read, however soon, does not serve the old copy.
    let next = cache.get("k", loader.value(2u32)).await.unwrap();
    assert_eq!(next.value, Some(2), "{next:?}");
    // And the old copy is removed from Redis for every instance.
    let key = cache.redis_key("k");
    holdfast_testkit::wait_until(Duration::from_secs(3), "the old copy is gone", || {
        let redis = env.redis.clone();
        let key = key.clone();
        async move {
            let stored: Option<String> = redis
                .run(Duration::from_secs(1), |mut conn| async move {
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await
                })
                .await
                .unwrap();
            stored.is_none_or(|s| !s.contains("\"v\":1"))
        }
    })
    .await;
    let other = ReadThrough::new(env.redis.clone(), "widgets", env.config());
    let seen = other.get("k", loader.value(3u32)).await.unwrap();
    assert_ne!(seen.value, Some(1), "{seen:?}");
}
