//! Request/reply and jobs against a real redis-server.

mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use holdfast_core::{Keys, ReplyStatus};
use holdfast_streams::{CallError, CallOptions, HandlerError, handler_fn};
use redis::Value;

use helpers::{Echo, assert_all_ok, env};

fn opts(ms: u64) -> CallOptions {
    CallOptions::json(Duration::from_millis(ms))
}

#[tokio::test]
async fn a_call_is_answered_by_a_worker() {
    let env = env().await;
    let echo = env.spawn_echo();
    let caller = env.caller();

    let reply = env
        .call_ok(&caller, Bytes::from_static(b"hello"), opts(3000))
        .await;

    assert_eq!(&reply.body[..], b"hello");
    assert_eq!(echo.runs(), 1);
}

#[tokio::test]
async fn a_callers_traceparent_reaches_the_handler_unchanged_without_opentelemetry() {
    let env = env().await;
    let handler = handler_fn(|req: holdfast_streams::Request| async move {
        Ok(Bytes::from(req.envelope.traceparent.unwrap_or_default()))
    });
    let _w = env.spawn_worker(env.worker_config(), handler);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut options = opts(3000);
    options.traceparent = Some(traceparent.to_owned());

    let reply = env.call_ok(&env.caller(), Bytes::new(), options).await;

    assert_eq!(&reply.body[..], traceparent.as_bytes());
}

#[tokio::test]
async fn many_concurrent_calls_each_get_their_own_reply() {
    let env = env().await;
    let _w = env.spawn_worker(env.worker_config(), Echo::new(Duration::from_millis(5)));
    let caller = env.caller();

    let calls = (0..200).map(|i| {
        let caller = caller.clone();
        let topic = env.topic.clone();
        async move {
            let body = Bytes::from(format!("n{i}"));
            let reply = caller.call(&topic, body.clone(), opts(5000)).await.unwrap();
            assert_eq!(reply.body, body);
        }
    });
    holdfast_testkit::join_all(calls).await;
    assert_eq!(caller.in_flight(), 0);
}

#[tokio::test]
async fn a_caller_stops_waiting_at_its_deadline() {
    let env = env().await;
    let caller = env.caller();

    let started = Instant::now();
    let err = caller
        .call(&env.topic, Bytes::new(), opts(300))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::DeadlineExceeded), "{err:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(800),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_expired_without_running_the_handler() {
    let env = env().await;
    let caller = env.caller();
    // Queued while no worker runs; its deadline passes in the stream.
    let _ = caller.call(&env.topic, Bytes::new(), opts(100)).await;
    let id = caller
        .enqueue_job(&env.topic, Bytes::new(), opts(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;

    let echo = env.spawn_echo();

    env.wait_for_job(&caller, &id, "expired", "job expired")
        .await;
    assert_eq!(echo.runs(), 0);
}

#[tokio::test]
async fn a_handler_that_always_fails_ends_in_dead_letters_and_the_caller_hears_dead() {
    let env = env().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let handler = handler_fn(move |req: holdfast_streams::Request| {
        let seen = seen.clone();
        async move {
            if &req.envelope.body[..] == b"poison" {
                seen.fetch_add(1, Ordering::SeqCst);
                panic!("poison pill");
            }
            Ok(req.envelope.body)
        }
    });
    let mut cfg = env.worker_config();
    cfg.max_deliveries = 3;
    let _w = env.spawn_worker(cfg, handler);
    let caller = env.caller();

    let poison = env.spawn_call(&caller, Bytes::from_static(b"poison"), opts(10_000));
    // The worker keeps serving others meanwhile.
    for _ in 0..5 {
        env.call_ok(&caller, Bytes::from_static(b"fine"), opts(3000))
            .await;
    }
    let reply = poison.await.unwrap().unwrap();

    assert_eq!(reply.status, ReplyStatus::Dead);
    assert_eq!(reply.code.as_deref(), Some("max_deliveries"));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let admin = env.admin();
    let letters = admin.dead_letters(&env.topic, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code.as_deref(), Some("max_deliveries"));
    assert_eq!(letters[0].deliveries, Some(3));
    assert_eq!(admin.topic_stats(&env.topic).await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_rejected_request_is_answered_error_once() {
    let env = env().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = runs.clone();
    let handler = handler_fn(move |_req| {
        seen.fetch_add(1, Ordering::SeqCst);
        async {
            Err(HandlerError::Rejected {
                code: "unknown_city".into(),
                message: "no such city".into(),
            })
        }
    });
    let _w = env.spawn_worker(env.worker_config(), handler);
    let reply = env
        .caller()
        .call(&env.topic, Bytes::new(), opts(3000))
        .await
        .unwrap();
    assert_eq!(reply.status, ReplyStatus::Error);
    assert_eq!(reply.code.as_deref(), Some("unknown_city"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_malformed_entry_becomes_a_dead_letter_with_its_reason() {
    let env = env().await;
    let echo = env.spawn_echo();
    let caller = env.caller();
    // What someone might type into redis-cli.
    env.add_raw_entry(&[("hello", "world")]).await;
    env.add_raw_entry(&[("v", "1"), ("id", "not-a-uuid"), ("kind", "call")])
        .await;

    env.wait_for_dead_letters(2, "two dead letters").await;
    let letters = env.admin().dead_letters(&env.topic, 10).await.unwrap();
    assert_eq!(letters[0].code.as_deref(), Some("missing_field"));
    assert!(letters[0].reason.as_deref().unwrap().contains("`v`"));
    assert_eq!(letters[1].code.as_deref(), Some("invalid_field"));
    // The worker is not stuck.
    env.call_ok(&caller, Bytes::from_static(b"x"), opts(3000))
        .await;
    assert_eq!(echo.runs(), 1);
}

#[tokio::test]
async fn an_entry_with_a_foreign_reply_key_is_dead_lettered_not_written_to() {
    let env = env().await;
    env.spawn_echo();
    let _: () = env
        .redis
        .cmd(redis::cmd("SET").arg("victim").arg("keep"))
        .await
        .unwrap();
    let id = holdfast_core::RequestId::new().to_string();
    let deadline_ms = (holdfast_core::Deadline::now_unix_ms() + 10_000).to_string();
    env.add_raw_entry(&[
        ("v", "1"),
        ("id", &id),
        ("kind", "call"),
        ("reply_to", "victim"),
        ("deadline_ms", &deadline_ms),
        ("body", "x"),
    ])
    .await;

    env.wait_for_dead_letters(1, "dead letter").await;
    let victim: String = env
        .redis
        .cmd(redis::cmd("GET").arg("victim"))
        .await
        .unwrap();
    assert_eq!(victim, "keep");
}

#[tokio::test]
async fn entries_left_by_a_dead_consumer_are_claimed_and_answered_before_the_deadline() {
    let env = env().await;
    let caller = env.caller();
    let stream = env.keys.request_stream(&env.topic, 0);
    // A consumer that reads and then dies without acknowledging.
    let _: () = env
        .redis
        .cmd(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(Keys::GROUP)
                .arg("0")
                .arg("MKSTREAM"),
        )
        .await
        .unwrap();
    let calls: Vec<_> = (0..5)
        .map(|i| env.spawn_call(&caller, Bytes::from(format!("{i}")), opts(5000)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let taken: Value = env
        .redis
        .cmd(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(Keys::GROUP)
                .arg("doomed")
                .arg("COUNT")
                .arg(100)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">"),
        )
        .await
        .unwrap();
    assert_eq!(holdfast_streams::value::read_reply(taken).len(), 5);

    let started = Instant::now();
    env.spawn_echo();
    assert_all_ok(calls).await;
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_slow_handler_keeps_its_claim_and_runs_once() {
    let env = env().await;
    let (echo_a, _a) = env.spawn_echo_after(Duration::from_millis(2000));
    let (echo_b, _b) = env.spawn_echo_after(Duration::from_millis(2000));

    env.call_ok(&env.caller(), Bytes::from_static(b"slow"), opts(8000))
        .await;

    // 2 s is more than three claim timeouts: without refresh it would be stolen.
    assert_eq!(echo_a.runs() + echo_b.runs(), 1);
}

#[tokio::test]
async fn trimming_never_drops_undelivered_or_pending_entries() {
    let env = env().await;
    let caller = env.caller();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let handler = handler_fn(move |req: holdfast_streams::Request| {
        let g = g.clone();
        async move {
            if &req.envelope.body[..] == b"hold" {
                let _p = g.acquire().await.unwrap();
            }
            Ok(req.envelope.body)
        }
    });
    let mut cfg = env.worker_config();
    cfg.concurrency = 2;
    cfg.claim_timeout = Duration::from_secs(30);
    let _w = env.spawn_worker(cfg, handler);
    // Two held requests occupy both terminals; the rest wait undelivered.
    let held: Vec<_> = (0..2)
        .map(|_| env.spawn_call(&caller, Bytes::from_static(b"hold"), opts(20_000)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting: Vec<_> = (0..20)
        .map(|_| env.spawn_call(&caller, Bytes::from_static(b"later"), opts(20_000)))
        .collect();
    // Several trim rounds pass while entries are pending and undelivered.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let admin = env.admin();
    let stats = admin.topic_stats(&env.topic).await.unwrap();
    assert_eq!(stats.pending, 2);
    assert_eq!(stats.lag, 20);
    assert!(stats.length >= 22);

    gate.add_permits(2);
    assert_all_ok(held.into_iter().chain(waiting)).await;
    // Once everything is handled, the trim removes it.
    holdfast_testkit::wait_until(Duration::from_secs(5), "stream trimmed", || {
        let admin = admin.clone();
        let topic = env.topic.clone();
        async move { admin.topic_stats(&topic).await.unwrap().length <= 1 }
    })
    .await;
}

#[tokio::test]
async fn a_job_is_queued_and_its_result_kept_by_id() {
    let env = env().await;
    let caller = env.caller();
    let id = caller
        .enqueue_job(&env.topic, Bytes::from_static(b"work"), opts(10_000))
        .await
        .unwrap();
    assert_eq!(
        caller.job(&env.topic, &id).await.unwrap().unwrap().status,
        "queued"
    );

    env.spawn_echo();
    env.wait_for_job(&caller, &id, "done", "job done").await;
    let job = caller.job(&env.topic, &id).await.unwrap().unwrap();
    assert_eq!(job.result.as_deref(), Some(&b"work"[..]));
    assert!(job.worker.is_some());
}

#[tokio::test]
async fn a_backlog_over_its_limit_refuses_new_calls() {
    let env = env().await;
    let caller = env.caller_with(|c| {
        c.backlog_limit = Some(5);
        c.backlog_refresh = Duration::from_millis(50);
    });
    caller.watch_backlog(&env.topic);
    for _ in 0..5 {
        caller
            .enqueue_job(&env.topic, Bytes::new(), opts(60_000))
            .await
            .unwrap();
    }
    holdfast_testkit::wait_until(Duration::from_secs(3), "backlog seen", || {
        let caller = caller.clone();
        let topic = env.topic.clone();
        async move { caller.backlog(&topic) == Some(5) }
    })
    .await;

    let err = caller
        .call(&env.topic, Bytes::new(), opts(1000))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            CallError::Backlog {
                backlog: 5,
                limit: 5
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_worker_carries_on_after_redis_restarts_without_its_data() {
    let mut env = env().await;
    env.spawn_echo();
    let caller = env.caller();
    env.call_ok(&caller, Bytes::new(), opts(3000)).await;

    env.server.kill9().await;
    env.server.restart().await.unwrap();
    assert!(env.redis.wait_ready(Duration::from_secs(5)).await);

    // The stream and group are gone; the worker re-creates them (NOGROUP).
    let reply = env
        .call_ok(&caller, Bytes::from_static(b"again"), opts(5000))
        .await;
    assert_eq!(&reply.body[..], b"again");
}

#[tokio::test]
async fn a_draining_worker_finishes_and_acknowledges_what_it_holds() {
    let env = env().await;
    let (echo, (stop, status, handle)) = env.spawn_echo_after(Duration::from_millis(500));
    let caller = env.caller();
    let calls: Vec<_> = (0..4)
        .map(|_| env.spawn_call(&caller, Bytes::new(), opts(5000)))
        .collect();
    holdfast_testkit::wait_until(Duration::from_secs(3), "all four in hand", || {
        let status = status.clone();
        async move { status.active() == 4 }
    })
    .await;

    stop.cancel();
    handle.await.unwrap();

    assert_all_ok(calls).await;
    assert_eq!(
        env.admin().topic_stats(&env.topic).await.unwrap().pending,
        0
    );
    assert_eq!(echo.runs(), 4);
}

#[tokio::test]
async fn dead_letters_can_be_replayed_and_purged() {
    let env = env().await;
    env.add_raw_entry(&[("junk", "1")]).await;
    let (stop, _, handle) = env.spawn_worker(env.worker_config(), Echo::new(Duration::ZERO));
    let admin = env.admin();
    env.wait_for_dead_letters(1, "dead letter").await;
    stop.cancel();
    handle.await.unwrap();

    assert_eq!(
        admin
            .replay(&env.topic, &[], Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    assert_eq!(admin.dead_letters(&env.topic, 10).await.unwrap().len(), 0);
    assert_eq!(admin.topic_stats(&env.topic).await.unwrap().lag, 1);
    // Still garbage: it comes back as a dead letter, and purge removes it.
    env.spawn_echo();
    env.wait_for_dead_letters(1, "dead again").await;
    assert_eq!(admin.purge(&env.topic).await.unwrap(), 1);
    assert_eq!(admin.dead_letters(&env.topic, 10).await.unwrap().len(), 0);
}

#[tokio::test]
async fn an_entry_read_while_shutdown_begins_is_still_handled_and_acknowledged() {
    let env = env().await;
    let mut cfg = env.worker_config();
    // A long block makes it near certain the read is in progress when the
    // entry arrives after the stop.
    cfg.block = Duration::from_secs(3);
    let echo = Echo::new(Duration::ZERO);
    let (stop, _status, handle) = env.spawn_worker(cfg, echo.clone());
    let caller = env.caller();
    env.call_ok(&caller, Bytes::new(), opts(3000)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    stop.cancel();
    let reply = caller
        .call(&env.topic, Bytes::from_static(b"late"), opts(5000))
        .await
        .unwrap();
    handle.await.unwrap();

    assert_eq!(reply.status, ReplyStatus::Ok);
    assert_eq!(echo.runs(), 2);
    assert_eq!(
        env.admin().topic_stats(&env.topic).await.unwrap().pending,
        0
    );
}

#[tokio::test]
async fn a_handler_still_running_during_the_drain_keeps_its_claim() {
    let env = env().await;
    // The handler outlasts three claim timeouts after the stop.
    let (slow, (stop, status, handle)) = env.spawn_echo_after(Duration::from_millis(2000));
    let caller = env.caller();
    let call = env.spawn_call(&caller, Bytes::from_static(b"x"), opts(8000));
    holdfast_testkit::wait_until(Duration::from_secs(3), "the slow worker took it", || {
        let status = status.clone();
        async move { status.active() == 1 }
    })
    .await;
    // A second worker that would claim the entry if its claim went stale.
    let other = env.spawn_echo();

    stop.cancel();
    let reply = tokio::time::timeout(Duration::from_secs(6), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(6), handle)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(reply.status, ReplyStatus::Ok);
    assert_eq!(slow.runs(), 1);
    assert_eq!(
        other.runs(),
        0,
        "the request was claimed and run again during the drain"
    );
}
