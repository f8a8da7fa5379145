//! The load generator against real HTTP servers on 127.0.0.1 (axum, port 0).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use holdfast_load::{
    FailureKind, HealthCheck, Hook, LoadError, LoadReport, LoadSpec, Mode, Outcome, Stop,
};
use holdfast_testkit::net::SilentServer;
use tokio_util::sync::CancellationToken;

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Answers `ok` to every `GET /`, after `delay`.
fn answers_ok_after(delay: Duration) -> Router {
    Router::new().route(
        "/",
        get(move || async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            "ok"
        }),
    )
}

fn spec(url: &str, mode: Mode, stop: Stop) -> LoadSpec {
    LoadSpec {
        url: url.to_owned(),
        method: http::Method::GET,
        headers: Vec::new(),
        body: Bytes::new(),
        mode,
        stop,
        timeout: Duration::from_secs(5),
        health_check: None,
        progress: false,
    }
}

/// Runs a load of `GET url` in `mode` until `stop`, which must succeed.
async fn run(url: &str, mode: Mode, stop: Stop) -> LoadReport {
    holdfast_load::run(spec(url, mode, stop)).await.unwrap()
}

fn requests(n: u64) -> Stop {
    Stop {
        requests: Some(n),
        ..Stop::default()
    }
}

fn lasting(duration: Duration) -> Stop {
    Stop {
        duration: Some(duration),
        ..Stop::default()
    }
}

fn assert_timeline_is_consistent(report: &LoadReport) {
    for (index, second) in report.timeline.iter().enumerate() {
        assert_eq!(second.second, index as u64, "no gaps, in order");
        assert_eq!(second.requests, second.ok + second.errors);
    }
    let total: u64 = report.timeline.iter().map(|s| s.requests).sum();
    assert_eq!(total, report.requests, "the timeline counts every request");
}

/// Answers the `n`th `GET /` (counting from 0) with what `answer(n)` makes.
fn numbered<F, Fut>(answer: F) -> Router
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = axum::response::Response> + Send + 'static,
{
    let counter = Arc::new(AtomicU64::new(0));
    Router::new().route(
        "/",
        get(move || answer(counter.fetch_add(1, Ordering::Relaxed))),
    )
}

/// Answers every 10th request with `error`, the others with 200.
fn every_tenth_fails(error: fn() -> axum::response::Response) -> Router {
    numbered(move |n| async move {
        if n % 10 == 9 {
            error()
        } else {
            "ok".into_response()
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted_by_status_and_plain_errors_are_unexplained() {
    let url = serve(every_tenth_fails(|| {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    }))
    .await;

    let report = run(&url, Mode::Concurrency(8), requests(1000)).await;

    assert_eq!(report.requests, 1000);
    assert_eq!(report.ok, 900);
    assert_eq!(report.errors, 100);
    assert_eq!(report.status_counts.get("200"), Some(&900));
    assert_eq!(report.status_counts.get("500"), Some(&100));
    assert_eq!(report.status_counts.len(), 2);
    assert!(report.failures.is_empty());
    assert_eq!(report.unexplained, 100);
    assert_timeline_is_consistent(&report);
    let summary = report.summary_json();
    assert_eq!(summary["requests"], 1000);
    assert_eq!(summary["status_counts"]["500"], 100);
    assert!(summary.get("timeline").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_json_errors_are_explained() {
    let url = serve(every_tenth_fails(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/problem+json")],
            r#"{"title":"busy","status":503}"#,
        )
            .into_response()
    }))
    .await;

    let report = run(&url, Mode::Concurrency(8), requests(1000)).await;

    assert_eq!(report.requests, 1000);
    assert_eq!(report.status_counts.get("503"), Some(&100));
    assert_eq!(report.errors, 100);
    assert_eq!(report.unexplained, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_of_a_20_ms_server_are_20_ms_within_precision() {
    let url = serve(answers_ok_after(Duration::from_millis(20))).await;

    let report = run(&url, Mode::Concurrency(4), requests(100)).await;

    assert_eq!(report.ok, 100);
    // Histogram precision is 0.1 %; the margin above is for scheduling on a
    // busy machine.
    assert!(report.p50_ms >= 20.0 && report.p50_ms <= 40.0, "{report:?}");
    assert!(report.p99_ms >= 20.0 && report.p99_ms <= 60.0, "{report:?}");
    assert!(report.max_ms >= report.p99_ms);
    assert!(report.p99_ms >= report.p90_ms && report.p90_ms >= report.p50_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_mode_sends_200_per_second_for_2_seconds() {
    let url = serve(answers_ok_after(Duration::ZERO)).await;
    let mode = Mode::Rate {
        per_sec: 200.0,
        max_in_flight: 16,
    };

    let report = run(&url, mode, lasting(Duration::from_secs(2))).await;

    assert!(
        (380..=420).contains(&report.requests),
        "{}",
        report.requests
    );
    assert_eq!(report.ok, report.requests);
    assert_timeline_is_consistent(&report);
}

/// Answers at once, except the 50th request, which takes a second.
fn stalls_once() -> Router {
    numbered(|n| async move {
        if n == 49 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        "ok".into_response()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_mode_latency_includes_the_wait_behind_a_stall() {
    let url = serve(stalls_once()).await;
    let mode = Mode::Rate {
        per_sec: 100.0,
        max_in_flight: 1,
    };

    let report = run(&url, mode, lasting(Duration::from_secs(2))).await;

    // About 100 requests were due during the stall; each waited for it.
    assert!(report.max_ms >= 950.0, "{report:?}");
    assert!(report.p90_ms >= 200.0, "{report:?}");
    assert!(report.requests >= 190, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_model_does_not_see_the_wait_behind_a_stall() {
    let url = serve(stalls_once()).await;

    let report = run(&url, Mode::Sequential, requests(200)).await;

    // The same stall is one slow request out of 200: invisible at p90.
    assert!(report.max_ms >= 950.0, "{report:?}");
    assert!(report.p90_ms < 50.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_every_request_with_connect() {
    let url = format!("http://127.0.0.1:{}/", holdfast_testkit::free_port());

    let report = run(&url, Mode::Concurrency(2), requests(50)).await;

    assert_eq!(report.requests, 50);
    assert_eq!(report.failures.get("connect"), Some(&50));
    assert_eq!(report.errors, 50);
    assert_eq!(report.unexplained, 50);
    assert!(report.status_counts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and keeps them, silent.
    let silent = SilentServer::start().await;
    let url = format!("http://127.0.0.1:{}/", silent.port());
    let mut load = spec(&url, Mode::Concurrency(2), requests(4));
    load.timeout = Duration::from_millis(200);

    let started = Instant::now();
    let report = holdfast_load::run(load).await.unwrap();

    assert_eq!(report.failures.get("timeout"), Some(&4));
    assert_eq!(report.requests, 4);
    assert!(report.p50_ms >= 200.0, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_token_ends_the_run_and_the_timeline_has_one_entry_per_second() {
    let url = serve(answers_ok_after(Duration::from_millis(2))).await;
    let cancel = CancellationToken::new();
    let stop = Stop {
        cancel: Some(cancel.clone()),
        ..Stop::default()
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2300)).await;
        cancel.cancel();
    });

    let report = run(&url, Mode::Concurrency(4), stop).await;

    assert!(
        report.duration_s >= 2.2 && report.duration_s < 4.0,
        "{}",
        report.duration_s
    );
    assert_eq!(report.timeline.len(), 3, "{:?}", report.timeline);
    assert!(report.timeline.iter().all(|s| s.requests > 0));
    assert_timeline_is_consistent(&report);
    assert!(report.started_at_unix_ms > 0);
}

/// Adds `x-seq` to each request and keeps what it saw.
#[derive(Default)]
struct Recorder {
    prepared: Mutex<HashMap<u64, u32>>,
    bodies_ok: AtomicU64,
}

impl Hook for Recorder {
    fn prepare(&self, seq: u64, headers: &mut http::HeaderMap) {
        headers.insert("x-seq", seq.into());
        *self.prepared.lock().unwrap().entry(seq).or_default() += 1;
    }

    fn observe(&self, _seq: u64, outcome: &Outcome<'_>) {
        if let Outcome::Answer { body, status, .. } = outcome
            && status.is_success()
            && &body[..] == b"ok"
        {
            self.bodies_ok.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_sees_every_request_once_and_its_headers_reach_the_server() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = serve(Router::new().route(
        "/",
        get({
            let seen = seen.clone();
            move |headers: HeaderMap| {
                let value = headers.get("x-seq").map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push(value.unwrap_or_default());
                async { "ok" }
            }
        }),
    ))
    .await;
    let hook = Arc::new(Recorder::default());

    let report = holdfast_load::run_with(
        spec(&url, Mode::Concurrency(4), requests(200)),
        hook.clone(),
    )
    .await
    .unwrap();

    assert_eq!(report.requests, 200);
    let prepared = hook.prepared.lock().unwrap();
    assert_eq!(prepared.len(), 200);
    assert!((0..200).all(|seq| prepared.get(&seq) == Some(&1)));
    assert_eq!(hook.bodies_ok.load(Ordering::Relaxed), 200);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|v| v.parse::<u64>().unwrap());
    let expected: Vec<String> = (0..200).map(|seq| seq.to_string()).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_url_that_never_answers_2xx_fails_the_run() {
    let url =
        serve(Router::new().route("/health", get(|| async { StatusCode::SERVICE_UNAVAILABLE })))
            .await;
    let mut load = spec(&url, Mode::Sequential, requests(10));
    load.health_check = Some(HealthCheck {
        url: format!("{url}/health"),
        timeout: Duration::from_millis(700),
    });

    let started = Instant::now();
    let error = holdfast_load::run(load).await.unwrap_err();

    assert!(
        matches!(&error, LoadError::Unhealthy { last, .. } if last.contains("503")),
        "{error}"
    );
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_target_is_loaded_after_its_check() {
    let url = serve(answers_ok_after(Duration::ZERO)).await;
    let mut load = spec(&url, Mode::Sequential, requests(10));
    load.health_check = Some(HealthCheck {
        url: url.clone(),
        timeout: Duration::from_secs(2),
    });

    let report = holdfast_load::run(load).await.unwrap();

    assert_eq!(report.ok, 10);
}

#[tokio::test]
async fn bad_specs_are_refused_before_sending_anything() {
    let https = spec("https://127.0.0.1:1/", Mode::Sequential, requests(1));
    let error = holdfast_load::run(https).await.unwrap_err();
    assert!(matches!(&error, LoadError::InvalidUrl { reason, .. } if reason.contains("https")));
    assert!(!error.is_retryable());

    let endless = spec("http://127.0.0.1:1/", Mode::Sequential, Stop::default());
    assert!(matches!(
        holdfast_load::run(endless).await,
        Err(LoadError::InvalidSpec(_))
    ));

    let nobody = spec("http://127.0.0.1:1/", Mode::Concurrency(0), requests(1));
    assert!(matches!(
        holdfast_load::run(nobody).await,
        Err(LoadError::InvalidSpec(_))
    ));
}

#[test]
fn failure_kinds_have_stable_names() {
    let names: Vec<String> = FailureKind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["connect", "timeout", "io"]);
}
