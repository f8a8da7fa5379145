//! Tracing setup and Prometheus rendering shared by every holdfast role.
//!
//! [`metrics_handle`] installs one process-wide `metrics` recorder (the
//! first call wins, later calls get the same handle), with explicit buckets
//! in seconds for every `*_seconds` histogram and the help texts of
//! `holdfast_core::metric_names`. Roles render it on their admin listener.
//! [`init_tracing`] picks JSON logs for production and pretty logs for a
//! terminal.
//!
//! The same recorder also feeds a [`SinkRegistry`] ([`sink_registry`]):
//! a `metrics_util` fanout hands every metric to both the Prometheus
//! recorder (rendered on the admin listener) and the sink registry, whose
//! values [`sink::MetricsSink`] flushes to Redis as deltas. [`aggregate`]
//! reads those aggregates back and renders one merged endpoint for the
//! exporter.

#![warn(missing_docs)]

pub mod aggregate;
mod layout;
pub mod otel;
pub mod registry;
pub mod sink;

pub use registry::SinkRegistry;

use std::io::IsTerminal;
use std::sync::OnceLock;

use holdfast_core::metric_names;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use tracing_subscriber::EnvFilter;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SINK_REGISTRY: OnceLock<SinkRegistry> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use.
///
/// The global recorder is a fanout over the Prometheus recorder and the
/// process-wide [`SinkRegistry`], so every metric reaches both.
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
            let sink = SINK_REGISTRY.get_or_init(SinkRegistry::new).clone();
            let fanout = FanoutBuilder::default()
                .add_recorder(recorder)
                .add_recorder(sink)
                .build();
            // Another recorder may already be installed (a test harness);
            // then this handle renders nothing, which is the honest result.
            let _ = metrics::set_global_recorder(fanout);
            for (name, help) in metric_names::ALL {
                metrics::describe_counter!(*name, *help);
            }
            handle
        })
        .clone()
}

/// The process-wide sink registry (installing the global recorder first),
/// for [`sink::MetricsSink::start`].
pub fn sink_registry() -> SinkRegistry {
    let _ = metrics_handle();
    SINK_REGISTRY.get_or_init(SinkRegistry::new).clone()
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
/// `default_filter`, such as `info`). Calling it twice is harmless. With
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported: see [`otel`].
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
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
            .finish()
            .with(otel::layer())
            .try_init(),
        LogFormat::Pretty => builder.compact().finish().with(otel::layer()).try_init(),
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
