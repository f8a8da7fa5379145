//! The Redis sink and the aggregate reader against real redis-servers.

mod helpers;

use std::time::{Duration, Instant};

use holdfast_redis::redis;
use holdfast_telemetry::SinkRegistry;
use holdfast_telemetry::aggregate;
use holdfast_telemetry::sink::{Flusher, MetricsSink};
use holdfast_testkit::prometheus::{parse_with_prometheus_client, value_of};
use holdfast_testkit::wait_until;
use tokio_util::sync::CancellationToken;

use helpers::{connect, fast_config, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_show_summed_counters_and_both_gauges_until_one_dies() {
    let env = connect(holdfast_testkit::redis().await).await;
    let (a, b) = (SinkRegistry::new(), SinkRegistry::new());
    for (registry, n, active) in [(&a, 3, 1.0), (&b, 4, 2.0)] {
        record(registry, || {
            metrics::describe_counter!("t_requests_total", "Requests.");
            metrics::counter!("t_requests_total", "route" => "/a").increment(n);
            metrics::gauge!("t_active").set(active);
            metrics::histogram!("t_latency_seconds").record(0.003);
        });
    }
    let stop_a = CancellationToken::new();
    let sink_a = MetricsSink::start(
        env.redis.clone(),
        a.clone(),
        fast_config("a"),
        stop_a.clone(),
    );
    let sink_b = MetricsSink::start(
        env.redis.clone(),
        b.clone(),
        fast_config("b"),
        CancellationToken::new(),
    );

    let redis = env.redis.clone();
    wait_until(Duration::from_secs(5), "both instances are flushed", || {
        let redis = redis.clone();
        async move {
            let text = aggregate::scrape(&redis, "t").await.unwrap_or_default();
            value_of(&text, r#"t_requests_total{route="/a"}"#) == Some(7.0)
                && value_of(&text, r#"t_active{instance="a"}"#) == Some(1.0)
                && value_of(&text, r#"t_active{instance="b"}"#) == Some(2.0)
        }
    })
    .await;
    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    assert_eq!(
        value_of(&text, "t_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, r#"t_latency_seconds_bucket{le="0.005"}"#),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP t_requests_total Requests.\n"),
        "{text}"
    );
    parse_with_prometheus_client(&text);

    // Instance b dies without a final flush; a keeps counting.
    sink_b.abort();
    let died = Instant::now();
    record(&a, || {
        metrics::counter!("t_requests_total", "route" => "/a").increment(10)
    });
    let redis = env.redis.clone();
    wait_until(
        Duration::from_secs(5),
        "the dead instance's gauges vanish",
        || {
            let redis = redis.clone();
            async move {
                let text = aggregate::scrape(&redis, "t").await.unwrap_or_default();
                !text.contains(r#"instance="b""#)
            }
        },
    )
    .await;
    let vanished_after = died.elapsed();
    assert!(
        vanished_after >= Duration::from_millis(300),
        "{vanished_after:?}"
    );
    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    assert_eq!(
        value_of(&text, r#"t_requests_total{route="/a"}"#),
        Some(17.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, r#"t_active{instance="a"}"#),
        Some(1.0),
        "{text}"
    );

    stop_a.cancel();
    sink_a.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_counter_increment_is_lost_while_redis_is_down_for_three_intervals() {
    let mut env = connect(holdfast_testkit::redis_with_aof().await).await;
    let registry = SinkRegistry::new();
    let (counter, histogram) = record(&registry, || {
        (
            metrics::counter!("t_events_total", "kind" => "x"),
            metrics::histogram!("t_work_seconds"),
        )
    });
    let stop = CancellationToken::new();
    let sink = MetricsSink::start(
        env.redis.clone(),
        registry,
        fast_config("only"),
        stop.clone(),
    );

    // Count steadily, before, during and after the outage.
    let counting = CancellationToken::new();
    let counter_task = tokio::spawn({
        let counting = counting.clone();
        async move {
            let mut total = 0u64;
            while !counting.is_cancelled() {
                counter.increment(1);
                histogram.record(0.01);
                total += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            total
        }
    });
    tokio::time::sleep(Duration::from_millis(350)).await;
    env.server.kill9().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.server.restart().await.expect("restart");
    tokio::time::sleep(Duration::from_millis(300)).await;
    counting.cancel();
    let total = counter_task.await.unwrap();
    assert!(
        env.redis.wait_ready(Duration::from_secs(5)).await,
        "reconnected"
    );
    stop.cancel();
    sink.await.unwrap();

    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    assert_eq!(
        value_of(&text, r#"t_events_total{kind="x"}"#),
        Some(total as f64),
        "{text}"
    );
    assert_eq!(
        value_of(&text, "t_work_seconds_count"),
        Some(total as f64),
        "{text}"
    );
    assert_eq!(
        value_of(&text, r#"t_work_seconds_bucket{le="0.01"}"#),
        Some(total as f64),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_whose_reply_was_lost_is_not_counted_twice() {
    let env = connect(holdfast_testkit::redis().await).await;
    let registry = SinkRegistry::new();
    record(&registry, || metrics::counter!("t_once_total").increment(5));
    let mut flusher = Flusher::new(registry.clone(), fast_config("f"));

    // Redis holds writes a little longer than the flush timeout (1 s) and
    // then applies them: the flusher sees a timeout although the flush
    // landed. (If the supervisor drops the connection first, Redis discards
    // the held script instead; the retry then applies it. Either way the
    // total must come out exact.)
    let _: () = env
        .redis
        .cmd(redis::cmd("CLIENT").arg("PAUSE").arg(1200).arg("WRITE"))
        .await
        .unwrap();
    assert!(flusher.flush(&env.redis).await.is_err());
    assert!(flusher.has_pending());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(env.redis.wait_ready(Duration::from_secs(5)).await);
    record(&registry, || metrics::counter!("t_once_total").increment(1));

    let retry = flusher.flush(&env.redis).await.expect("retry");
    assert!(retry.retried, "{retry:?}");
    eprintln!("retried flush was a duplicate: {}", !retry.applied);
    let next = flusher.flush(&env.redis).await.expect("next");
    assert!(next.applied && !next.retried, "{next:?}");

    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    assert_eq!(value_of(&text, "t_once_total"), Some(6.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_and_help_are_escaped_and_a_real_parser_reads_them_back() {
    let env = connect(holdfast_testkit::redis().await).await;
    let registry = SinkRegistry::new();
    let nasty = "say \"hi\"\\ then\nbye";
    record(&registry, || {
        metrics::describe_counter!("t_odd_total", "Help with a back\\slash\nand a newline.");
        metrics::counter!("t_odd_total", "v" => nasty).increment(2);
        metrics::gauge!("t_odd_level", "v" => nasty).set(-1.5);
        metrics::histogram!("t_odd_seconds", "v" => nasty).record(0.2);
    });
    let mut flusher = Flusher::new(registry, fast_config("i\"1"));
    flusher.flush(&env.redis).await.expect("flush");

    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    assert!(
        text.contains("t_odd_total{v=\"say \\\"hi\\\"\\\\ then\\nbye\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP t_odd_total Help with a back\\\\slash\\nand a newline.\n"),
        "{text}"
    );
    assert!(text.contains("t_odd_seconds_quantile{"), "{text}");
    let Some(samples) = parse_with_prometheus_client(&text) else {
        return;
    };
    let odd = samples
        .iter()
        .find(|s| s.name == "t_odd_total")
        .expect("counter parsed");
    assert_eq!(odd.labels.get("v").map(String::as_str), Some(nasty));
    assert_eq!(odd.help, "Help with a back\\slash\nand a newline.");
    let level = samples
        .iter()
        .find(|s| s.name == "t_odd_level")
        .expect("gauge parsed");
    assert_eq!(
        level.labels.get("instance").map(String::as_str),
        Some("i\"1")
    );
    assert_eq!(level.labels.get("v").map(String::as_str), Some(nasty));
    let p99 = samples
        .iter()
        .find(|s| {
            s.name == "t_odd_seconds_quantile"
                && s.labels.get("quantile").map(String::as_str) == Some("0.99")
        })
        .expect("quantile parsed");
    let p99: f64 = p99.value.parse().unwrap();
    assert!((0.1..=0.25).contains(&p99), "{p99}");
}

#[test]
fn the_per_role_render_is_accepted_by_a_real_parser() {
    let _ = holdfast_telemetry::metrics_handle();
    metrics::counter!("holdfast_calls_total", "topic" => "q\"t", "outcome" => "ok").increment(1);
    metrics::gauge!("holdfast_worker_terminals").set(4.0);
    metrics::histogram!("holdfast_call_duration_seconds", "topic" => "t").record(0.02);
    let text = holdfast_telemetry::render();
    assert!(text.contains("holdfast_calls_total"), "{text}");
    parse_with_prometheus_client(&text);
    // The same metrics reached the process-wide sink registry.
    let snapshot = holdfast_telemetry::sink_registry().snapshot();
    assert!(
        snapshot
            .counters
            .iter()
            .any(|(k, v)| k.name() == "holdfast_calls_total" && *v == 1)
    );
    assert!(
        snapshot
            .help
            .iter()
            .any(|(name, _)| name == "holdfast_calls_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_series_are_flushed_and_scraped_whole() {
    let env = connect(holdfast_testkit::redis().await).await;
    let registry = SinkRegistry::new();
    record(&registry, || {
        for i in 0..9_000 {
            metrics::counter!("t_many_total", "n" => i.to_string()).increment(1);
        }
        for i in 0..1_000 {
            metrics::gauge!("t_many_level", "n" => i.to_string()).set(f64::from(i));
        }
    });
    let mut flusher = Flusher::new(registry, fast_config("big"));
    let started = Instant::now();
    flusher.flush(&env.redis).await.expect("flush");
    let flush = started.elapsed();

    let started = Instant::now();
    let text = aggregate::scrape(&env.redis, "t").await.unwrap();
    let scrape = started.elapsed();
    eprintln!("10,000 series (debug build): flush {flush:?}, scrape {scrape:?}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("t_many_total{"))
            .count(),
        9_000
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("t_many_level{"))
            .count(),
        1_000
    );
    assert_eq!(value_of(&text, r#"t_many_total{n="8999"}"#), Some(1.0));
}
