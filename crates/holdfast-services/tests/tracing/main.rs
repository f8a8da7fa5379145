//! One trace spans ingress, stream and worker: with an OpenTelemetry layer
//! installed (an in-memory exporter here), the worker's handler span is a
//! child of the ingress span that enqueued the request, itself a child of
//! the `traceparent` the client sent.
//!
//! A test binary of its own: it installs the process-wide subscriber.

use std::sync::OnceLock;
use std::time::Duration;

use holdfast_testkit::roles::ingress::{NEW_YORK, TestIngress, spawn_ingress};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Installs the global subscriber with an in-memory exporter, once.
fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let subscriber = tracing_subscriber::registry()
                .with(LevelFilter::INFO)
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            (exporter, provider)
        })
        .0
        .clone()
}

/// Waits until an `http` span and a `handle` span of `trace` have ended.
async fn spans_of(exporter: &InMemorySpanExporter, trace: TraceId) -> (SpanData, SpanData) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = exporter.get_finished_spans().expect("exporter readable");
        let find = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name && s.span_context.trace_id() == trace)
                .cloned()
        };
        if let (Some(http), Some(handle)) = (find("http"), find("handle")) {
            return (http, handle);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans of trace {trace} not exported: {:?}",
            spans
                .iter()
                .map(|s| (s.name.clone(), s.span_context.trace_id()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn forecast(app: &TestIngress, traceparent: Option<&str>) -> reqwest::Response {
    let mut req = app.forecast_request(NEW_YORK, None);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.expect("request sent");
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_span_is_a_child_of_the_ingress_span_across_the_stream() {
    let exporter = exporter();
    let app = spawn_ingress(|_| {}).await;
    app.spawn_worker().await;

    // A client's trace context: the ingress span continues it.
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01");
    let body = forecast(&app, Some(&traceparent)).await.bytes().await;
    assert!(body.is_ok());
    let trace = TraceId::from_hex(TRACE_ID).unwrap();
    let (http, handle) = spans_of(&exporter, trace).await;
    assert_eq!(
        http.parent_span_id,
        SpanId::from_hex(CLIENT_SPAN_ID).unwrap(),
        "the ingress span continues the client's trace"
    );
    assert!(http.parent_span_is_remote);
    assert_eq!(handle.span_context.trace_id(), trace);
    assert_eq!(
        handle.parent_span_id,
        http.span_context.span_id(),
        "the worker's span is a child of the ingress span that enqueued"
    );
    assert!(
        handle.parent_span_is_remote,
        "the parent came through the stream"
    );

    // Without a client context the ingress starts the trace, and the worker
    // still joins it.
    exporter.reset();
    forecast(&app, None).await.bytes().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let http = loop {
        let spans = exporter.get_finished_spans().unwrap();
        if let Some(http) = spans.into_iter().find(|s| s.name == "http") {
            break http;
        }
        assert!(tokio::time::Instant::now() < deadline, "no http span");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(http.parent_span_id, SpanId::INVALID, "a root span");
    let (_, handle) = spans_of(&exporter, http.span_context.trace_id()).await;
    assert_eq!(handle.parent_span_id, http.span_context.span_id());
}
