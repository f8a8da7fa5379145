//! The middleware stack every listener shares, and serving with graceful
//! shutdown.
//!
//! Order of the stack (the first listed sees the request first):
//! 1. error mapping: bare error responses get a problem+json body;
//! 2. panic catching: a panicking handler answers 500 problem+json;
//! 3. request id: `x-request-id` is set when absent and echoed back;
//! 4. trace: one span per request, carrying the request id;
//! 5. metrics: request count and duration by route, method and status;
//! 6. timeout: a request running past the listener's limit gets 504;
//! 7. body limit: extractors refuse larger bodies with 413 (axum's
//!    `DefaultBodyLimit`, which every body extractor honours);
//! 8. load shed: beyond `max_in_flight` concurrent requests, 503 at once
//!    rather than a queue that grows without bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use holdfast_core::metric_names;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::problem::{ApiError, bare_errors_as_problems};

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Longest a request may take before the listener answers 504.
    pub timeout: Duration,
    /// Requests handled at once before new ones are shed with 503.
    pub max_in_flight: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            timeout: Duration::from_secs(30),
            max_in_flight: 10_000,
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the stack described in the module docs.
pub fn stack(router: Router, cfg: &StackConfig) -> Router {
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight));
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(bare_errors_as_problems))
            .layer(CatchPanicLayer::custom(|_panic| {
                tracing::error!("request handler panicked");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
            }))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id);
                // An incoming W3C trace context is the parent of this span.
                if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
                    holdfast_streams::trace_context::set_parent(&span, tp);
                }
                span
            }))
            .layer(middleware::from_fn(record_metrics))
            .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, cfg.timeout))
            .layer(DefaultBodyLimit::max(cfg.body_limit))
            .layer(middleware::from_fn_with_state(in_flight, shed_load)),
    )
}

async fn shed_load(State(in_flight): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::unavailable(
            "overloaded",
            "too many requests in flight",
            Duration::from_secs(1),
        )
        .into_response(),
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(metric_names::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(metric_names::HTTP_REQUEST_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves a role: its public listener until `shutdown` is cancelled (then
/// `draining` is set, new connections are refused and requests in progress
/// finish), and its admin listener until the public one has drained, so
/// probes see the drain. Cancels `background` at the end, which stops the
/// admin listener and the role's background tasks.
pub async fn serve_role(
    role: &'static str,
    listener: TcpListener,
    app: Router,
    admin: Option<(TcpListener, Router)>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio_util::sync::CancellationToken,
    background: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let admin_task = admin.map(|(listener, router)| {
        let stop = background.clone();
        tokio::spawn(serve(
            listener,
            router,
            async move { stop.cancelled().await },
        ))
    });
    let result = serve(listener, app, async move {
        shutdown.cancelled().await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            role,
            "draining: refusing new connections, finishing requests in progress"
        );
    })
    .await;
    background.cancel();
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in progress finish (new connections are refused).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Responses are written whole; Nagle's algorithm would only hold the
    // last segment of a large one back until the client's delayed ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set on an accepted connection");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
