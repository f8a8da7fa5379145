//! `holdfast bench`: programs that print figures, never assertions.
//!
//! Each benchmark starts its own redis-server (unless given a URL), runs
//! the real code paths in this process, and prints either a table for
//! people or one JSON object for scripts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use holdfast_core::{Keys, Topic};
use holdfast_redis::local::{LocalRedis, LocalRedisOptions};
use holdfast_redis::{Redis, RedisConfig, TlsOptions};
use holdfast_services::ingress::{Ingress, IngressSettings};
use holdfast_services::weather::WeatherHandler;
use holdfast_streams::{
    Admin, CallOptions, Caller, CallerConfig, Worker, WorkerConfig, handler_fn,
};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchCommand, BenchStreamsArgs};

/// Figures of one measured path.
#[derive(Serialize, Debug)]
pub struct PathFigures {
    calls_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

#[derive(Serialize, Debug)]
struct StreamsReport {
    direct: PathFigures,
    http: PathFigures,
}

#[derive(Serialize, Debug)]
struct JobsReport {
    enqueue_per_sec: f64,
    drain_per_sec: f64,
}

/// Runs one benchmark.
pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Streams {
            concurrency,
            duration,
            json,
            redis,
            streams: how,
        } => {
            let tls = redis.tls();
            let (_server, url) = redis_for_bench(redis.redis_url).await?;
            let report = streams(&url, &tls, &how, concurrency.max(1), duration).await?;
            print_report(&report, json, |report| {
                println!(
                    "path    calls/s    p50 ms   p99 ms   errors   ({concurrency} in flight, {duration:?} each)"
                );
                for (name, f) in [("direct", &report.direct), ("http", &report.http)] {
                    println!(
                        "{name:<7} {:>9.0} {:>9.3} {:>8.3} {:>8}",
                        f.calls_per_sec, f.p50_ms, f.p99_ms, f.errors
                    );
                }
            })?;
        }
        BenchCommand::Cache {
            concurrency,
            duration,
            json,
            redis_url,
            l1,
        } => {
            let settings = crate::bench_cache::CacheBench {
                concurrency: concurrency.max(1),
                duration,
                l1,
            };
            crate::bench_cache::run(settings, redis_url, json).await?;
        }
        BenchCommand::Metrics { json, redis_url } => {
            let (_server, url) = redis_for_bench(redis_url).await?;
            crate::bench_metrics::run(&url, json).await?;
        }
        BenchCommand::Jobs {
            count,
            json,
            redis,
            streams: how,
        } => {
            let tls = redis.tls();
            let (_server, url) = redis_for_bench(redis.redis_url).await?;
            let report = jobs(&url, &tls, &how, count.max(1)).await?;
            print_report(&report, json, |report| {
                println!(
                    "{count} no-op jobs: enqueue {:.0}/s, drain {:.0}/s",
                    report.enqueue_per_sec, report.drain_per_sec
                );
            })?;
        }
    }
    Ok(())
}

/// Prints a benchmark's report: one JSON object for scripts, or what `table`
/// prints for people.
pub(crate) fn print_report<R: Serialize>(
    report: &R,
    json: bool,
    table: impl FnOnce(&R),
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        table(report);
    }
    Ok(())
}

pub(crate) async fn redis_for_bench(url: Option<String>) -> Result<(Option<LocalRedis>, String)> {
    match url {
        Some(url) => Ok((None, url)),
        None => {
            let server = LocalRedis::start(LocalRedisOptions::default())
                .await
                .context("could not start redis-server for the benchmark")?;
            let url = server.url();
            Ok((Some(server), url))
        }
    }
}

fn bench_keys() -> Keys {
    Keys::new(format!("bench{}", fastrand::u32(..)))
}

pub(crate) async fn connect(url: &str, shutdown: &CancellationToken) -> Result<Redis> {
    connect_with(url, &TlsOptions::default(), shutdown).await
}

/// [`connect`] with TLS settings.
pub(crate) async fn connect_with(
    url: &str,
    tls: &TlsOptions,
    shutdown: &CancellationToken,
) -> Result<Redis> {
    let redis = Redis::start(redis_config(url, tls), shutdown.clone())?;
    anyhow::ensure!(
        redis.wait_ready(Duration::from_secs(5)).await,
        "redis at {url} is not answering"
    );
    Ok(redis)
}

fn redis_config(url: &str, tls: &TlsOptions) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.tls = tls.clone();
    cfg
}

fn figures(hist: &Histogram<u64>, ok: u64, errors: u64, elapsed: Duration) -> PathFigures {
    PathFigures {
        calls_per_sec: ok as f64 / elapsed.as_secs_f64(),
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    }
}

/// Runs `concurrency` loops of `op` for `duration`; latencies in microseconds.
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    op: F,
) -> (Histogram<u64>, u64, u64, Duration)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let end = started + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let errors = errors.clone();
        tasks.spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut ok = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                if op().await {
                    ok += 1;
                    let _ = hist.record(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            (hist, ok)
        });
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut ok = 0;
    while let Some(Ok((hist, n))) = tasks.join_next().await {
        let _ = total.add(&hist);
        ok += n;
    }
    (total, ok, errors.load(Ordering::Relaxed), started.elapsed())
}

async fn streams(
    url: &str,
    tls: &TlsOptions,
    how: &BenchStreamsArgs,
    concurrency: usize,
    duration: Duration,
) -> Result<StreamsReport> {
    let shutdown = CancellationToken::new();
    let redis = connect_with(url, tls, &shutdown).await?;
    let keys = bench_keys();
    let topic = Topic::parse("weather")?;
    let mut cfg = WorkerConfig::new(keys.clone(), topic.clone());
    cfg.concurrency = concurrency.max(16) * 2;
    cfg.partitions = how.partitions.max(1);
    let handler = WeatherHandler {
        processing_time: Duration::ZERO,
        worker: cfg.consumer.clone(),
        effects: None,
    };
    let worker = Worker::new(redis.clone(), cfg, handler);
    let worker_task = tokio::spawn(worker.run(shutdown.child_token()));
    let mut caller_cfg = CallerConfig::new(keys.clone());
    caller_cfg.partitions = how.partitions.max(1);
    let caller = Caller::start(redis.clone(), caller_cfg, shutdown.clone());
    let durability = how.durability;
    let options = move || {
        let mut options = CallOptions::json(Duration::from_secs(5));
        options.durability = durability;
        options
    };
    let body = Bytes::from_static(br#"{"city":"New York","location":"Downtown"}"#);

    // Warm-up: connections, scripts, group creation.
    for _ in 0..100 {
        let _ = caller.call(&topic, body.clone(), options()).await;
    }
    let direct = {
        let caller = caller.clone();
        let topic = topic.clone();
        let body = body.clone();
        let (hist, ok, errors, elapsed) = drive(concurrency, duration, move || {
            let caller = caller.clone();
            let topic = topic.clone();
            let body = body.clone();
            async move {
                matches!(caller.call(&topic, body, options()).await,
                    Ok(r) if r.status == holdfast_core::ReplyStatus::Ok)
            }
        })
        .await;
        figures(&hist, ok, errors, elapsed)
    };

    let mut settings = IngressSettings::new(redis_config(url, tls));
    settings.partitions = how.partitions.max(1);
    settings.durability = how.durability;
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin_listen = None;
    settings.keys = keys.clone();
    settings.backlog_limit = None;
    let ingress = Ingress::build(settings).await?;
    let endpoint = format!("http://127.0.0.1:{}/WeatherForecast/city", ingress.port());
    let ingress_stop = CancellationToken::new();
    let ingress_task = tokio::spawn(ingress.run_until_stopped(ingress_stop.clone()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    for _ in 0..100 {
        let _ = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
    }
    let http = {
        let (hist, ok, errors, elapsed) = drive(concurrency, duration, move || {
            let request = client
                .post(&endpoint)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                match request.send().await {
                    Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        figures(&hist, ok, errors, elapsed)
    };
    ingress_stop.cancel();
    let _ = ingress_task.await;
    shutdown.cancel();
    let _ = worker_task.await;
    Ok(StreamsReport { direct, http })
}

async fn jobs(
    url: &str,
    tls: &TlsOptions,
    how: &BenchStreamsArgs,
    count: usize,
) -> Result<JobsReport> {
    let shutdown = CancellationToken::new();
    let redis = connect_with(url, tls, &shutdown).await?;
    let keys = bench_keys();
    let topic = Topic::parse("jobs")?;
    let mut caller_cfg = CallerConfig::new(keys.clone());
    caller_cfg.job_ttl = Duration::from_secs(600);
    caller_cfg.partitions = how.partitions.max(1);
    let durability = how.durability;
    let caller = Caller::start(redis.clone(), caller_cfg, shutdown.clone());
    let body = Bytes::from_static(b"{}");

    let enqueuers = 64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..enqueuers {
        let caller = caller.clone();
        let topic = topic.clone();
        let body = body.clone();
        let share = count / enqueuers + usize::from(n < count % enqueuers);
        tasks.spawn(async move {
            let mut queued = 0usize;
            for _ in 0..share {
                let mut options = CallOptions::json(Duration::from_secs(600));
                options.durability = durability;
                let job = caller.enqueue_job(&topic, body.clone(), options);
                queued += usize::from(job.await.is_ok());
            }
            queued
        });
    }
    // Only jobs Redis took count, for the rate and for the drain to wait on.
    let mut queued = 0usize;
    while let Some(n) = tasks.join_next().await {
        queued += n.unwrap_or(0);
    }
    anyhow::ensure!(queued > 0, "no job could be enqueued");
    if queued < count {
        tracing::warn!(failed = count - queued, "some enqueues failed");
    }
    let enqueue_elapsed = started.elapsed();

    let mut cfg = WorkerConfig::new(keys.clone(), topic.clone());
    cfg.concurrency = 512;
    cfg.partitions = how.partitions.max(1);
    let worker = Worker::new(
        redis.clone(),
        cfg,
        handler_fn(|_req| async { Ok(Bytes::new()) }),
    );
    let status = worker.status();
    let admin = Admin::new(redis.clone(), keys, how.partitions.max(1));
    let drain_started = Instant::now();
    let worker_task = tokio::spawn(worker.run(shutdown.child_token()));
    loop {
        if status.handled() as usize >= queued {
            break;
        }
        if drain_started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("drain did not finish in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_elapsed = drain_started.elapsed();
    let backlog = admin
        .topic_stats(&topic)
        .await
        .map(|s| s.backlog)
        .unwrap_or(0);
    if backlog > 0 {
        tracing::warn!(backlog, "backlog left after the drain");
    }
    shutdown.cancel();
    let _ = worker_task.await;
    Ok(JobsReport {
        enqueue_per_sec: queued as f64 / enqueue_elapsed.as_secs_f64(),
        drain_per_sec: queued as f64 / drain_elapsed.as_secs_f64(),
    })
}
