//! `holdfast exporter` over HTTP, against a real redis-server: topic
//! figures, Redis essentials, Redis down, label escaping, and output that a
//! real Prometheus text parser accepts (the roles' own `/metrics` too).

use std::time::{Duration, Instant};

use holdfast_core::Topic;
use holdfast_testkit::prometheus::{parse_with_prometheus_client, value_of};
use holdfast_testkit::roles::exporter::spawn_exporter;

fn series(name: &str, topic: &str, partition: u16) -> String {
    format!("{name}{{topic=\"{topic}\",partition=\"{partition}\"}}")
}

#[tokio::test]
async fn a_topic_with_pending_entries_and_a_dead_letter_is_reported_per_partition() {
    let app = spawn_exporter(|_| {}).await;
    let orders = Topic::parse("orders").unwrap();
    let p0 = app.keys.request_stream(&orders, 0);
    let p1 = app.keys.request_stream(&orders, 1);
    let dead0 = app.keys.dead_letter_stream(&orders, 0);
    app.cmd(&["XGROUP", "CREATE", &p0, "workers", "0", "MKSTREAM"])
        .await;
    for n in 0..5 {
        app.cmd(&["XADD", &p0, "*", "n", &n.to_string()]).await;
    }
    // Two entries delivered to one consumer and never acknowledged.
    app.cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "consumer-a",
        "COUNT",
        "2",
        "STREAMS",
        &p0,
        ">",
    ])
    .await;
    app.cmd(&["XADD", &dead0, "*", "dead_code", "max_deliveries"])
        .await;
    app.cmd(&["XADD", &p1, "*", "n", "1"]).await;
    // A look-alike key of the wrong type must be skipped, not fail the scrape.
    let broken = format!("{}:{{broken:0}}:req", app.keys.prefix());
    app.cmd(&["SET", &broken, "not a stream"]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (status, content_type, text) = app.scrape().await;

    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let figure = |name: &str, partition: u16| {
        value_of(&text, &series(name, "orders", partition))
            .unwrap_or_else(|| panic!("{name} of partition {partition} missing in\n{text}"))
    };
    assert_eq!(figure("holdfast_topic_length", 0), 5.0);
    assert_eq!(figure("holdfast_topic_pending", 0), 2.0);
    assert_eq!(figure("holdfast_topic_lag", 0), 3.0);
    assert_eq!(figure("holdfast_topic_consumers", 0), 1.0);
    assert_eq!(figure("holdfast_topic_dead_letters", 0), 1.0);
    let age = figure("holdfast_topic_oldest_pending_age_seconds", 0);
    assert!(age > 0.0 && age < 60.0, "oldest pending age {age}");
    // No group yet on partition 1: everything is waiting.
    assert_eq!(figure("holdfast_topic_length", 1), 1.0);
    assert_eq!(figure("holdfast_topic_lag", 1), 1.0);
    assert_eq!(figure("holdfast_topic_pending", 1), 0.0);
    assert_eq!(figure("holdfast_topic_dead_letters", 1), 0.0);
    assert_eq!(figure("holdfast_topic_oldest_pending_age_seconds", 1), 0.0);
    assert!(
        !text.contains("broken"),
        "a string key was reported:\n{text}"
    );

    assert_eq!(value_of(&text, "holdfast_redis_up"), Some(1.0));
    assert!(value_of(&text, "holdfast_redis_memory_used_bytes").is_some_and(|m| m > 0.0));
    assert!(value_of(&text, "holdfast_redis_connected_clients").is_some_and(|c| c >= 2.0));
    assert!(value_of(&text, "holdfast_redis_commands_processed_total").is_some());
    assert_eq!(
        value_of(&text, "holdfast_redis_role{role=\"master\"}"),
        Some(1.0)
    );
    assert_eq!(
        value_of(&text, "holdfast_exporter_scrape_success{part=\"topics\"}"),
        Some(1.0)
    );

    if let Some(samples) = parse_with_prometheus_client(&text) {
        let pending = samples
            .iter()
            .find(|s| {
                s.name == "holdfast_topic_pending"
                    && s.labels.get("topic").map(String::as_str) == Some("orders")
                    && s.labels.get("partition").map(String::as_str) == Some("0")
            })
            .expect("the parser sees the pending figure");
        assert_eq!(pending.value.parse::<f64>().ok(), Some(2.0));
    }
}

#[tokio::test]
async fn a_worker_that_dead_letters_an_unreadable_entry_shows_as_consumer_and_its_own_metrics_parse()
 {
    let app = spawn_exporter(|_| {}).await;
    let worker_admin = app.spawn_worker("weather").await.admin;
    // An entry no handler can read: the worker consumes it (which makes it
    // a consumer of the group) and moves it to the dead letters.
    let weather = Topic::parse("weather").unwrap();
    app.cmd(&[
        "XADD",
        &app.keys.request_stream(&weather, 0),
        "*",
        "junk",
        "1",
    ])
    .await;

    let consumers = series("holdfast_topic_consumers", "weather", 0);
    let dead = series("holdfast_topic_dead_letters", "weather", 0);
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while value_of(&last, &consumers) != Some(1.0) || value_of(&last, &dead) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the worker never showed as a consumer with a dead letter:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = app.scrape().await.2;
    }
    assert_eq!(
        value_of(&last, &series("holdfast_topic_pending", "weather", 0)),
        Some(0.0)
    );
    parse_with_prometheus_client(&last);

    // The roles' own admin /metrics is Prometheus text too.
    let resp = holdfast_testkit::http::get(&app.client, &format!("{worker_admin}/metrics")).await;
    assert_eq!(resp.status(), 200);
    let own = resp.text().await.unwrap();
    assert!(own.contains("holdfast_redis_connection_state"), "{own}");
    parse_with_prometheus_client(&own);
}

#[tokio::test]
async fn with_redis_killed_a_scrape_answers_200_at_once_with_redis_up_0_only() {
    let mut app = spawn_exporter(|_| {}).await;
    let orders = Topic::parse("orders").unwrap();
    app.cmd(&["XADD", &app.keys.request_stream(&orders, 0), "*", "n", "1"])
        .await;
    assert_eq!(
        value_of(&app.scrape().await.2, "holdfast_redis_up"),
        Some(1.0)
    );

    app.redis.server.kill9().await;
    let started = Instant::now();
    let (status, _, text) = app.scrape().await;
    let took = started.elapsed();

    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(1500), "scrape took {took:?}");
    assert_eq!(value_of(&text, "holdfast_redis_up"), Some(0.0), "{text}");
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples, ["holdfast_redis_up 0"]);
    parse_with_prometheus_client(&text);

    // Later scrapes, with the supervisor reconnecting, stay fast too.
    let started = Instant::now();
    let (status, _, text) = app.scrape().await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(value_of(&text, "holdfast_redis_up"), Some(0.0));
}

#[tokio::test]
async fn topic_names_with_quotes_backslashes_and_newlines_are_escaped_in_labels() {
    let app = spawn_exporter(|_| {}).await;
    let odd = "say \"hi\"\\now\nnext";
    let key = format!("{}:{{{odd}:0}}:req", app.keys.prefix());
    app.cmd(&["XADD", &key, "*", "n", "1"]).await;

    let (status, _, text) = app.scrape().await;

    assert_eq!(status, 200);
    let escaped = r#"say \"hi\"\\now\nnext"#;
    assert_eq!(
        value_of(&text, &series("holdfast_topic_length", escaped, 0)),
        Some(1.0),
        "{text}"
    );
    if let Some(samples) = parse_with_prometheus_client(&text) {
        let topic = samples
            .iter()
            .find(|s| s.name == "holdfast_topic_length")
            .and_then(|s| s.labels.get("topic"))
            .expect("the parser sees the topic label");
        assert_eq!(topic, odd);
    }
}

#[tokio::test]
async fn named_topics_are_reported_with_their_partitions_before_their_streams_exist() {
    let app = spawn_exporter(|settings| {
        settings.topics = Some(vec![Topic::parse("billing").unwrap()]);
        settings.partitions = 2;
    })
    .await;
    let stray = Topic::parse("stray").unwrap();
    app.cmd(&["XADD", &app.keys.request_stream(&stray, 0), "*", "n", "1"])
        .await;

    let (_, _, text) = app.scrape().await;

    for partition in 0..2 {
        assert_eq!(
            value_of(
                &text,
                &series("holdfast_topic_length", "billing", partition)
            ),
            Some(0.0),
            "{text}"
        );
    }
    assert!(!text.contains("stray"), "an unnamed topic was reported");
}

#[tokio::test]
async fn health_is_served_next_to_metrics_and_ready_even_with_redis_down() {
    let mut app = spawn_exporter(|_| {}).await;
    app.redis.server.kill9().await;

    let ready =
        holdfast_testkit::http::get(&app.client, &format!("{}/health/ready", app.base)).await;
    let detail =
        holdfast_testkit::http::get_json(&app.client, &format!("{}/health", app.base)).await;

    assert_eq!(ready.status(), 200);
    assert_eq!(detail["role"], "exporter");
    assert!(matches!(
        detail["redis"]["state"],
        serde_json::Value::String(_)
    ));
}

#[tokio::test]
async fn flushed_aggregates_are_served_with_the_redis_and_topic_figures_as_one_valid_exposition() {
    let app = spawn_exporter(|_| {}).await;
    // What a role's sink writes for a counter (layout in holdfast-telemetry).
    let counter = format!("{}:{{metrics}}:c:holdfast_calls_total", app.keys.prefix());
    app.cmd(&["HSET", &counter, "outcome=\"ok\",topic=\"orders\"", "3"])
        .await;
    let orders = Topic::parse("orders").unwrap();
    app.cmd(&["XADD", &app.keys.request_stream(&orders, 0), "*", "n", "1"])
        .await;

    let (status, _, text) = app.scrape().await;

    assert_eq!(status, 200);
    assert_eq!(
        value_of(
            &text,
            "holdfast_calls_total{outcome=\"ok\",topic=\"orders\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            "holdfast_exporter_scrape_success{part=\"aggregates\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(&text, &series("holdfast_topic_length", "orders", 0)),
        Some(1.0)
    );
    parse_with_prometheus_client(&text);
}
