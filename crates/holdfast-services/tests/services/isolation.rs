//! One client's misbehaviour never degrades another's service: a caller
//! whose own deadline runs out is not a Redis failure, so it never opens
//! the breaker that every other caller goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use holdfast_testkit::roles::ingress::{NEW_YORK, spawn_ingress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_giving_calls_1_ms_do_not_make_redis_look_down_for_the_others() {
    let _heavy = crate::HEAVY.lock().await;
    let app = Arc::new(spawn_ingress(|_| {}).await);
    app.spawn_worker().await;
    assert_eq!(app.forecast(NEW_YORK, None).await.status(), 200);

    // 16 clients at full speed, each call with a 1 ms deadline.
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_answers = Arc::new(AtomicUsize::new(0));
    let mut hostile = Vec::new();
    for _ in 0..16 {
        let (app, stop, answers) = (app.clone(), stop.clone(), hostile_answers.clone());
        hostile.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = app.forecast(NEW_YORK, Some(1)).await;
                let status = resp.status().as_u16();
                if status == 503 {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    statuses.push(format!("503 {}", body["code"]));
                } else {
                    statuses.push(status.to_string());
                }
                answers.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        }));
    }
    // 4 ordinary clients, 40 calls each, with the default deadline.
    let breaker_seen_open = Arc::new(AtomicBool::new(false));
    let mut ordinary = Vec::new();
    for _ in 0..4 {
        let (app, open) = (app.clone(), breaker_seen_open.clone());
        ordinary.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..40 {
                let resp = app.forecast(NEW_YORK, None).await;
                if resp.status() != 200 {
                    failed.push(format!(
                        "{} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    ));
                }
                let health = app.get_json("/health").await;
                if health["redis"]["breaker"] != "closed" {
                    open.store(true, Ordering::Relaxed);
                }
            }
            failed
        }));
    }
    let mut failed = Vec::new();
    for task in ordinary {
        failed.extend(task.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let mut hostile_statuses = Vec::new();
    for task in hostile {
        hostile_statuses.extend(task.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of 160 ordinary calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        !breaker_seen_open.load(Ordering::Relaxed),
        "the Redis breaker opened"
    );
    assert!(
        hostile_answers.load(Ordering::Relaxed) >= 100,
        "the 1 ms clients ran: {}",
        hostile_answers.load(Ordering::Relaxed)
    );
    // Their own deadline ran out: 504, never a Redis outage.
    let unavailable = hostile_statuses
        .iter()
        .filter(|s| s.starts_with("503"))
        .count();
    assert_eq!(
        unavailable,
        0,
        "1 ms calls answered 503: {:?}",
        hostile_statuses
            .iter()
            .filter(|s| s.starts_with("503"))
            .take(3)
            .collect::<Vec<_>>()
    );
}
