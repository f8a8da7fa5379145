//! OpenTelemetry traces over OTLP/HTTP (protobuf), on only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! [`layer`] builds the `tracing-opentelemetry` layer that
//! [`crate::init_tracing`] adds to the subscriber: every enabled `tracing`
//! span becomes an OpenTelemetry span, batched and sent to
//! `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces` (or to
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given). The standard variables
//! apply: `OTEL_SERVICE_NAME` (default `holdfast-<role>`, such as
//! `holdfast-ingress`), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` for the batch. The exporter
//! speaks plain HTTP (no TLS stack is built in): point it at a local
//! collector or agent.
//!
//! Exports run on a small runtime of their own (one thread), so they work
//! whether or not the role's runtime exists yet and are not slowed by it.
//! [`shutdown`] (or dropping a [`ShutdownGuard`]) flushes what is queued at
//! exit. Without the variable nothing here runs and nothing is installed.
//!
//! Trace context crosses the stream inside entries: see
//! `holdfast_streams::trace_context`.

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// Where spans go; export is off when it is unset or empty.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The `service.name` of the spans; `holdfast-<role>` when unset.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";

struct Pipeline {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
}

static PIPELINE: Mutex<Option<Pipeline>> = Mutex::new(None);

/// Whether `OTEL_EXPORTER_OTLP_ENDPOINT` asks for trace export.
pub fn enabled() -> bool {
    std::env::var(ENDPOINT_VAR).is_ok_and(|v| !v.trim().is_empty())
}

/// The OpenTelemetry layer exporting to `OTEL_EXPORTER_OTLP_ENDPOINT`, or
/// `None` when it is unset (or the exporter cannot be built, which is said
/// on stderr: logging is not installed yet when this runs).
pub fn layer<S>() -> Option<OpenTelemetryLayer<S, SdkTracer>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    // One pipeline per process: a second call (a second `init_tracing`)
    // gets no layer rather than a rival exporter.
    if !enabled() || PIPELINE.lock().is_ok_and(|p| p.is_some()) {
        return None;
    }
    match install(service_name()) {
        Ok(tracer) => Some(tracing_opentelemetry::layer().with_tracer(tracer)),
        Err(err) => {
            eprintln!("holdfast: OpenTelemetry export disabled: {err}");
            None
        }
    }
}

fn install(service_name: String) -> Result<SdkTracer, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()?;
    let provider = {
        // The batch processor spawns its task on the runtime entered here.
        let _entered = runtime.enter();
        // The endpoint, headers and timeout come from the OTEL_* variables.
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .build()
    };
    let tracer = provider.tracer("holdfast");
    *PIPELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Pipeline { provider, runtime });
    Ok(tracer)
}

/// `OTEL_SERVICE_NAME`, else `holdfast-<role>` from the command line.
fn service_name() -> String {
    if let Ok(name) = std::env::var(SERVICE_NAME_VAR)
        && !name.trim().is_empty()
    {
        return name;
    }
    default_service_name(std::env::args().nth(1).as_deref())
}

fn default_service_name(subcommand: Option<&str>) -> String {
    match subcommand {
        Some(role)
            if role.starts_with(|c: char| c.is_ascii_alphabetic())
                && role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            format!("holdfast-{role}")
        }
        _ => "holdfast".to_owned(),
    }
}

impl Pipeline {
    fn shut_down(self) {
        // Flushes the queued spans; blocks until the export answers or
        // times out (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default).
        if let Err(err) = self.provider.shutdown() {
            eprintln!("holdfast: flushing OpenTelemetry spans failed: {err}");
        }
        // May run inside another runtime: never block on this one's drop.
        self.runtime.shutdown_background();
    }
}

/// Flushes queued spans and stops the exporter. Harmless when export is
/// off or already shut down. Spans that end afterwards are dropped.
pub fn shutdown() {
    let pipeline = PIPELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(pipeline) = pipeline {
        pipeline.shut_down();
    }
}

/// Calls [`shutdown`] when dropped: hold one in `main` for the life of
/// the process.
#[derive(Debug, Default)]
#[must_use = "spans are flushed when the guard is dropped"]
pub struct ShutdownGuard;

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_service_name_names_the_role() {
        assert_eq!(default_service_name(Some("ingress")), "holdfast-ingress");
        assert_eq!(
            default_service_name(Some("dead-letters")),
            "holdfast-dead-letters"
        );
        assert_eq!(default_service_name(Some("--help")), "holdfast");
        assert_eq!(default_service_name(Some("a b")), "holdfast");
        assert_eq!(default_service_name(None), "holdfast");
    }
}
