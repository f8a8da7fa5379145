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
//! 6. authentication, when configured: who the client is, from an API key
//!    or a JWT (`crate::auth::identify`), refusing nothing yet;
//! 7. rate limit: per client (the authenticated one, else the address)
//!    and route group, 429 beyond it (`crate::rate_limit`);
//! 8. authentication's refusal: 401 for missing or refused credentials
//!    (`crate::auth::require`), after the rate limit so that guessing
//!    spends the guesser's budget;
//! 9. timeout: a request running past the listener's limit gets 504;
//! 10. body limit: extractors refuse larger bodies with 413 (axum's
//!     `DefaultBodyLimit`, which every body extractor honours);
//! 11. load shed: beyond `max_in_flight` concurrent requests, 503 at once
//!     rather than a queue that grows without bound;
//! 12. body read: a declared `Content-Length` over the limit gets 413
//!     before any byte of the body is read; a body that does not arrive
//!     whole within `body_timeout` gets 408.
//!
//! Below the stack, [`serve`] bounds the connections themselves: at most
//! `max_connections` open (beyond them a connection gets a 503 and is
//! closed), and `header_timeout` for a request's headers to arrive, which
//! hyper also applies to a kept-alive connection waiting for its next
//! request, so neither a half-sent request nor an idle connection holds a
//! file descriptor for long.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use holdfast_core::metric_names;
use holdfast_resilience::Tasks;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Auth;
use crate::problem::{ApiError, bare_errors_as_problems};
use crate::rate_limit::{RateLimitConfig, RateLimits};

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Longest a request may take before the listener answers 504.
    pub timeout: Duration,
    /// Requests handled at once before new ones are shed with 503.
    pub max_in_flight: usize,
    /// Longest a request's body may take to arrive whole before 408.
    pub body_timeout: Duration,
    /// Longest a request's headers may take to arrive, counted from the
    /// connection's opening or, on a kept-alive one, from the end of the
    /// previous response: also the idle timeout of kept-alive connections.
    pub header_timeout: Duration,
    /// Connections open at once; one more gets a 503 and is closed.
    pub max_connections: usize,
    /// Per-client rate limits (see [`crate::rate_limit`]); `None` is off.
    pub rate_limit: Option<RateLimitConfig>,
    /// Credentials the listener requires (see [`crate::auth`]); `None`
    /// requires none.
    pub auth: Option<Arc<Auth>>,
}

impl StackConfig {
    /// Largest request body unless configured otherwise: 64 KiB, far above
    /// any request the roles take.
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
    /// Longest a request may take unless configured otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Requests handled at once unless configured otherwise.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
    /// Time for a body to arrive unless configured otherwise.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Time for headers (and idle keep-alive) unless configured otherwise.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    /// Open connections unless configured otherwise: below the usual limit
    /// of a service's file descriptors, with room for its Redis and
    /// database connections.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            body_limit: Self::DEFAULT_BODY_LIMIT,
            timeout: Self::DEFAULT_TIMEOUT,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            rate_limit: Some(RateLimitConfig::default()),
            auth: None,
        }
    }
}

/// `0.0.0.0:port`: how the public listeners listen unless configured
/// otherwise.
pub(crate) const fn every_interface(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

/// `127.0.0.1:port`: how the admin listeners listen unless configured
/// otherwise.
pub(crate) const fn loopback_only(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
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
                let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, client = tracing::field::Empty);
                // An incoming W3C trace context is the parent of this span.
                if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
                    holdfast_streams::trace_context::set_parent(&span, tp);
                }
                span
            }))
            .layer(middleware::from_fn(record_metrics))
            .option_layer(
                cfg.auth
                    .clone()
                    .map(|auth| middleware::from_fn_with_state(auth, crate::auth::identify)),
            )
            .option_layer(cfg.rate_limit.map(|limits| {
                middleware::from_fn_with_state(RateLimits::new(limits), crate::rate_limit::limit)
            }))
            .option_layer(
                cfg.auth
                    .clone()
                    .map(|auth| middleware::from_fn_with_state(auth, crate::auth::require)),
            )
            .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, cfg.timeout))
            .layer(DefaultBodyLimit::max(cfg.body_limit))
            .layer(middleware::from_fn_with_state(in_flight, shed_load))
            .layer(middleware::from_fn_with_state(
                BodyLimits {
                    limit: cfg.body_limit,
                    timeout: cfg.body_timeout,
                },
                read_body,
            )),
    )
}

/// Swagger UI at `/swagger-ui/` over the document at
/// `/api-docs/openapi.json`, and `/swagger`, where other stacks put it,
/// redirecting there.
pub(crate) fn swagger_ui(openapi: utoipa::openapi::OpenApi) -> Router {
    Router::new()
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", openapi),
        )
        .route(
            "/swagger",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/swagger-ui/") }),
        )
}

/// What [`read_body`] enforces.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    limit: usize,
    timeout: Duration,
}

/// Reads a request's body whole before the handler runs: 413 at once for
/// a declared length over the limit, 408 when the body does not arrive
/// within the timeout (a client that sent less than its `Content-Length`,
/// or stalls), 400 when it cannot be read. Every body is at most the
/// listener's limit (64 KiB by default), so holding it is cheap.
async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    match declared {
        Some(length) if length > limits.limit as u64 => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is {length} bytes; this listener takes at most {}",
                    limits.limit
                ),
            )
            .into_response();
        }
        Some(0) => return next.run(req).await,
        None if !chunked => return next.run(req).await,
        _ => {}
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive whole within {}",
                holdfast_core::format_duration(limits.timeout)
            ),
        )
        .into_response(),
        // A declared length over the limit was answered above: past it,
        // only a chunked body can run over.
        Ok(Err(_)) if declared.is_none() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body is over the {} bytes this listener takes",
                limits.limit
            ),
        )
        .into_response(),
        Ok(Err(err)) => ApiError::bad_request(
            "body_unreadable",
            format!("the body could not be read: {err}"),
        )
        .into_response(),
    }
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
        let served = serve(
            listener,
            router,
            &StackConfig::default(),
            stop.cancelled_owned(),
        )
        .await;
        if let Err(err) = &served {
            tracing::error!(error = %err, "the admin listener failed");
        }
        served
    })
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in progress finish (new connections are refused), with the
/// connection limits of `limits` (see the module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &StackConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: the header timer then runs from the first moment of
    // a connection (the protocol detection of an HTTP/2-capable listener
    // would read with no timer at all), and every limit here applies to
    // every request. Load balancers speak HTTP/1.1 to their targets.
    let mut builder = ConnBuilder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = 0u32;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors = 0;
                    accepted
                }
                Err(err) => {
                    // Out of file descriptors, mostly: wait for some to
                    // free up rather than spin.
                    accept_errors += 1;
                    if accept_errors == 1 || accept_errors.is_power_of_two() {
                        tracing::warn!(error = %err, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            refuse(&stream);
            continue;
        };
        // Responses are written whole; Nagle's algorithm would only hold
        // the last segment of a large one back until the client's delayed
        // ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set on an accepted connection");
        }
        let service = router
            .clone()
            .map_request(move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            });
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Requests in progress have the listener's own time limit to finish
    // (past it they would be answered 504 anyway); a connection that
    // outlives it (a half-sent request, an event stream) is dropped.
    if tokio::time::timeout(limits.timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            limit = ?limits.timeout,
            "connections still open after the drain: closing them"
        );
    }
    Ok(())
}

/// Tells a connection over the limit why it is closed: a 503 problem,
/// written only if the socket takes it at once (a client that does not
/// read cannot hold the accept loop).
fn refuse(stream: &tokio::net::TcpStream) {
    const BODY: &str = r#"{"type":"https://holdfast.invalid/problems/too_many_connections","title":"Service Unavailable","status":503,"detail":"this listener has as many connections open as it takes","code":"too_many_connections"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
    metrics::counter!(metric_names::HTTP_CONNECTIONS_REFUSED).increment(1);
}
