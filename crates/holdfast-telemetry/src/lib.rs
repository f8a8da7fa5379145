//! Tracing setup and Prometheus rendering shared by every holdfast role.
//!
//! [`metrics_handle`] installs one process-wide `metrics` recorder (the
//! first call wins, later calls get the same handle), with explicit buckets
//! in seconds for every `*_seconds` histogram and the help texts of
//! `holdfast_core::metric_names`. Roles render it on their admin listener.
//! [`init_tracing`] picks JSON logs for production and pretty logs for a
//! terminal.

#![warn(missing_docs)]

use std::io::IsTerminal;
use std::sync::OnceLock;

use holdfast_core::metric_names;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    metric_names::LATENCY_BUCKETS,
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness);
            // then this handle renders nothing, which is the honest result.
            let _ = metrics::set_global_recorder(recorder);
            for (name, help) in metric_names::ALL {
                metrics::describe_counter!(*name, *help);
            }
            handle
        })
        .clone()
}

/// Renders every metric in Prometheus text format.
pub fn render() -> String {
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-friendly, for a terminal.
    Pretty,
}

impl LogFormat {
    /// `HOLDFAST_LOG_FORMAT=json|pretty`, else pretty on a terminal and
    /// JSON otherwise.
    pub fn from_env() -> Self {
        match std::env::var("HOLDFAST_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("pretty") => LogFormat::Pretty,
            _ if std::io::stderr().is_terminal() => LogFormat::Pretty,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global tracing subscriber; `RUST_LOG` filters (default
/// `default_filter`, such as `info`). Calling it twice is harmless.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_render_as_prometheus_text() {
        let _ = metrics_handle();
        metrics::counter!(metric_names::CALLS, "topic" => "t", "outcome" => "ok").increment(3);
        metrics::histogram!(metric_names::CALL_DURATION, "topic" => "t").record(0.002);
        let text = render();
        assert!(
            text.contains("holdfast_calls_total{topic=\"t\",outcome=\"ok\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("holdfast_call_duration_seconds_bucket{topic=\"t\",le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
