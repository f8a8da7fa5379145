//! W3C trace context carried inside stream entries.
//!
//! The caller writes the `traceparent` of the span that enqueues into the
//! entry, and the worker makes it the parent of the span that handles the
//! entry, so one trace spans caller, stream and worker. Both ends work
//! through `tracing`: the OpenTelemetry side exists only when a
//! `tracing-opentelemetry` layer is installed (see `holdfast-telemetry`).
//! Without one, [`current_traceparent`] answers `None` and [`set_parent`]
//! does nothing, neither allocating, so the `traceparent` a caller was given
//! travels through unchanged.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The one header of W3C trace context this crate carries.
struct Carrier<'a> {
    read: Option<&'a str>,
    written: Option<String>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.read
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.written = Some(value);
        }
    }
}

/// The `traceparent` of `span` when an OpenTelemetry layer records it.
pub fn traceparent_of(span: &Span) -> Option<String> {
    // Without an OpenTelemetry layer (or for a disabled span) this is an
    // empty context: no allocation, no span.
    let cx = span.context();
    if !cx.has_active_span() || !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier {
        read: None,
        written: None,
    };
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.written
}

/// The `traceparent` of the current span when an OpenTelemetry layer
/// records it; what a caller writes into the entries it enqueues.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// Makes the W3C `traceparent` the parent of `span`, which must not have
/// been entered yet. Does nothing for a disabled span, without an
/// OpenTelemetry layer, or when `traceparent` is not valid.
pub fn set_parent(span: &Span, traceparent: &str) {
    if span.is_disabled() {
        return;
    }
    // Setting the ambient context as parent (what the span would get
    // anyway) allocates nothing and tells whether a layer records the span
    // at all; the header is parsed only when one does.
    if span.set_parent(Context::current()).is_err() {
        return;
    }
    let carrier = Carrier {
        read: Some(traceparent),
        written: None,
    };
    let cx = TraceContextPropagator::new().extract(&carrier);
    // A header that is not valid leaves the ambient parent in place.
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
