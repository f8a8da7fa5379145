//! The middleware stack every listener shares, serving with graceful
//! shutdown, and the few pieces of HTTP the roles have in common (the
//! listener defaults, answers that carry a `Location`).
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
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use holdfast_core::metric_names;
use holdfast_resilience::Tasks;
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

impl StackConfig {
    /// Largest request body unless configured otherwise: 64 KiB, far above
    /// any request the roles take.
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
    /// Longest a request may take unless configured otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Requests handled at once unless configured otherwise.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            body_limit: Self::DEFAULT_BODY_LIMIT,
            timeout: Self::DEFAULT_TIMEOUT,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// `0.0.0.0:port`: how the roles listen unless configured otherwise.
pub(crate) const fn every_interface(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `status` with `body` as JSON and a `Location` header naming where the
/// new thing (an order, a user, a job's status) can be read.
pub(crate) fn located(status: StatusCode, location: &str, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Wraps `router` in the stack described in the module docs.
pub fn stack(router: Router, cfg: &StackConfig) -> Router {
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight));
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(bare_errors_as_problems))
            .layer(CatchPanicLayer::custom(|_panic| {
                tracing::error!("request handler panicked");
                ApiError::internal("internal error").into_response()
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

/// How long a stopping role waits for its background tasks (Redis
/// supervisor, reply reader, cache listeners and loads, admin listener)
/// once it has stopped serving.
/// Every such task watches the stop token, so this is only reached by one
/// that is stuck; it stays well under the 5 s a supervisor (the chaos
/// stack, an orchestrator's termination grace) allows between SIGTERM and
/// SIGKILL.
pub const TASK_GRACE: Duration = Duration::from_secs(2);

/// Asks a role's background tasks to stop and waits for them, at most
/// [`TASK_GRACE`]; a task still running then is logged and left to end with
/// the process.
pub async fn stop_tasks(role: &'static str, tasks: &Tasks) {
    if !tasks.stop_and_wait(TASK_GRACE).await {
        tracing::warn!(
            role,
            running = tasks.running(),
            grace = ?TASK_GRACE,
            "background tasks still running after the grace period"
        );
    }
}

/// Serves an admin listener as one of `tasks`, until they are asked to
/// stop. A failure is logged at once (the role goes on without its
/// probes); the handle gives it to whoever wants to report it at the end.
pub fn serve_admin(
    listener: TcpListener,
    router: Router,
    tasks: &Tasks,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let stop = tasks.stop_token();
    tasks.spawn(async move {
        let served = serve(listener, router, stop.cancelled_owned()).await;
        if let Err(err) = &served {
            tracing::error!(error = %err, "the admin listener failed");
        }
        served
    })
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
