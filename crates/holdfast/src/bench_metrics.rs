//! `holdfast bench metrics`: what the metrics pipeline costs.
//!
//! - `counter_ns`, `histogram_ns`: one increment of a resolved counter and
//!   one record into a resolved `*_seconds` histogram through the
//!   process-wide recorder (what every role records into), two threads on
//!   the same handle, wall time per operation per thread;
//! - `flush_ms_10k_series`: one sink flush of 10,000 new counter series
//!   (one Lua script call) into Redis;
//! - `scrape_ms_10k_series`: the exporter's read and render of those
//!   series, best of five.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use holdfast_telemetry::SinkRegistry;
use holdfast_telemetry::aggregate;
use holdfast_telemetry::sink::{Flusher, SinkConfig};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Operations per thread in the hot-path measurements.
const OPS_PER_THREAD: u64 = 5_000_000;
/// Series in the flush and scrape measurements.
const SERIES: usize = 10_000;

#[derive(Serialize, Debug)]
struct MetricsReport {
    counter_ns: f64,
    histogram_ns: f64,
    flush_ms_10k_series: f64,
    scrape_ms_10k_series: f64,
}

/// Wall time per operation of `work` (which does `OPS_PER_THREAD`
/// operations) run on two threads at once.
fn per_op_ns(work: impl Fn() + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(&work);
        }
    });
    started.elapsed().as_nanos() as f64 / OPS_PER_THREAD as f64
}

/// Runs the benchmark against the Redis at `url`.
pub async fn run(url: &str, json: bool) -> Result<()> {
    let _ = holdfast_telemetry::metrics_handle();
    let counter = metrics::counter!("holdfast_calls_total", "topic" => "bench", "outcome" => "ok");
    let histogram = metrics::histogram!("holdfast_call_duration_seconds", "topic" => "bench");
    let counter_ns = per_op_ns(|| {
        for _ in 0..OPS_PER_THREAD {
            counter.increment(1);
        }
    });
    let histogram_ns = per_op_ns(|| {
        for i in 0..OPS_PER_THREAD {
            histogram.record((i % 1000) as f64 * 1e-5);
        }
    });

    let shutdown = CancellationToken::new();
    let redis = crate::bench::connect(url, &shutdown).await?;
    let registry = SinkRegistry::new();
    metrics::with_local_recorder(&registry, || {
        for i in 0..SERIES {
            metrics::counter!("bench_series_total", "n" => i.to_string()).increment(1);
        }
    });
    let prefix = format!("bench{}", fastrand::u32(..));
    let cfg = SinkConfig {
        prefix: prefix.clone(),
        ..SinkConfig::default()
    };
    let mut flusher = Flusher::new(registry, cfg);
    let started = Instant::now();
    flusher
        .flush(&redis)
        .await
        .context("flushing 10,000 series")?;
    let flush_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut scrape_ms = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let text = aggregate::scrape(&redis, &prefix)
            .await
            .context("scraping 10,000 series")?;
        scrape_ms = scrape_ms.min(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            text.lines()
                .filter(|l| l.starts_with("bench_series_total"))
                .count()
                == SERIES,
            "the scrape did not return every series"
        );
    }
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(10)).await;

    let report = MetricsReport {
        counter_ns,
        histogram_ns,
        flush_ms_10k_series: flush_ms,
        scrape_ms_10k_series: scrape_ms,
    };
    crate::bench::print_report(&report, json, |report| {
        println!(
            "counter increment {:.1} ns, histogram record {:.1} ns (2 threads); flush of {SERIES} series {:.1} ms, scrape {:.1} ms",
            report.counter_ns,
            report.histogram_ns,
            report.flush_ms_10k_series,
            report.scrape_ms_10k_series
        );
    })
}
