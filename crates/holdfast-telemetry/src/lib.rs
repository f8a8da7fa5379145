//! Tracing setup and Prometheus rendering shared by every holdfast role.
//!
//! [`metrics_handle`] installs one process-wide `metrics` recorder, a
//! [`SinkRegistry`] (the first call wins, later calls get the same
//! registry), and records the help texts of `holdfast_core::metric_names`
//! in it. Histograms have fixed buckets: seconds for every `*_seconds`
//! histogram, [`registry::DEFAULT_BUCKETS`] for the others
//! ([`registry::buckets_for`]). [`render`] writes the registry's current
//! values in Prometheus text format, with the same renderer as
//! [`aggregate`]; roles serve it on their admin listener. [`init_tracing`]
//! picks JSON logs for production and pretty logs for a terminal.
//!
//! [`sink::MetricsSink`] flushes the same registry's values to Redis as
//! deltas; [`aggregate`] reads those aggregates back and renders one merged
//! endpoint for the exporter.

#![warn(missing_docs)]

pub mod aggregate;
pub mod exposition;
mod layout;
pub mod otel;
pub mod recent_logs;
pub mod registry;
pub mod sink;

pub use exposition::{Exposition, MetricKind};
pub use registry::SinkRegistry;

use std::io::IsTerminal;
use std::sync::OnceLock;

use holdfast_core::metric_names;
use tracing_subscriber::EnvFilter;

static SINK_REGISTRY: OnceLock<SinkRegistry> = OnceLock::new();

/// The process-wide [`SinkRegistry`], installed as the global `metrics`
/// recorder on first use.
pub fn metrics_handle() -> SinkRegistry {
    SINK_REGISTRY
        .get_or_init(|| {
            let registry = SinkRegistry::new();
            // Another recorder may already be installed (a test harness);
            // then this registry stays empty and renders nothing, which is
            // the honest result.
            let _ = metrics::set_global_recorder(registry.clone());
            for (name, help) in metric_names::ALL {
                registry.describe(name, help);
            }
            registry
        })
        .clone()
}

/// The process-wide sink registry (installing the global recorder first),
/// for [`sink::MetricsSink::start`]; the same as [`metrics_handle`].
pub fn sink_registry() -> SinkRegistry {
    metrics_handle()
}

/// Renders every metric of this process in Prometheus text format 0.0.4
/// (labels sorted by name, plus the `<histogram>_quantile` gauge families
/// of [`aggregate::render`]).
pub fn render() -> String {
    aggregate::render(&aggregate::Snapshot::from_registry(
        &metrics_handle().snapshot(),
    ))
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
/// `default_filter`, such as `info`). What passes the filter is written to
/// stderr and kept in [`recent_logs::recent_logs`]. Calling it twice is
/// harmless. With
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported: see [`otel`].
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // What passes the filter is also kept for the admin `/logs` endpoint.
    let recent = recent_logs::RecentLogsLayer::new(recent_logs::recent_logs());
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
            .with(recent)
            .try_init(),
        LogFormat::Pretty => builder
            .compact()
            .finish()
            .with(otel::layer())
            .with(recent)
            .try_init(),
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
            text.contains("holdfast_calls_total{outcome=\"ok\",topic=\"t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("holdfast_call_duration_seconds_bucket{topic=\"t\",le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
