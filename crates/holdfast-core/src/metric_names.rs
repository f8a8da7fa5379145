//! Metric names and help texts, in one place for every crate.
//!
//! Names follow Prometheus conventions: `holdfast_` prefix, base units
//! (seconds, bytes), `_total` on counters. Labels stay low-cardinality
//! (topic, outcome, status), never ids.
//!
//! One exception: the store demo's metrics (`user_events_total`,
//! `users_waiting`, `users_active`, `users_served`, `users_total`) keep the
//! names of the seed metrics demo, without the `holdfast_` prefix, so its
//! dashboards and queries work unchanged.

/// `(name, help)` of every metric holdfast emits; the telemetry crate
/// registers the help texts from this list.
pub const ALL: &[(&str, &str)] = &[
    (
        REDIS_STATE,
        "Redis connection state: 0 connecting, 1 ready, 2 reconnecting, 3 stuck, 4 disabled.",
    ),
    (
        REDIS_RECONNECTS,
        "Connection attempts to Redis that followed a lost or failed connection.",
    ),
    (
        REDIS_BREAKER_STATE,
        "Redis circuit breaker: 0 closed, 1 open, 2 half open.",
    ),
    (
        REDIS_COMMAND_ERRORS,
        "Redis commands that failed, by kind of failure.",
    ),
    (CALLS, "Calls made through a Caller, by topic and outcome."),
    (
        CALL_DURATION,
        "Time from enqueue to reply of a call, in seconds.",
    ),
    (
        CALLS_IN_FLIGHT,
        "Calls waiting for a reply in this process.",
    ),
    (JOBS_ENQUEUED, "Jobs enqueued, by topic."),
    (
        WORKER_HANDLED,
        "Requests handled by workers, by topic and outcome.",
    ),
    (
        WORKER_HANDLE_DURATION,
        "Time a handler spent on one request, in seconds.",
    ),
    (
        WORKER_ACTIVE,
        "Requests being handled right now (busy terminals).",
    ),
    (
        WORKER_CAPACITY,
        "Concurrent requests a worker may handle (terminals).",
    ),
    (
        WORKER_CLAIMED,
        "Entries claimed from other consumers after the claim timeout.",
    ),
    (
        DEAD_LETTERS,
        "Entries moved to the dead-letter stream, by topic and reason.",
    ),
    (
        TOPIC_BACKLOG,
        "Entries waiting or in progress for a topic (group lag plus pending).",
    ),
    (
        HTTP_REQUESTS,
        "HTTP requests answered, by route and status class.",
    ),
    (HTTP_REQUEST_DURATION, "HTTP request duration, in seconds."),
    (
        CACHE_READS,
        "Cache reads answered, by entity and outcome (hit, miss, stale, bypass, error); the fallback rate is the bypass share.",
    ),
    (
        CACHE_NEGATIVE_HITS,
        "Cache hits on a cached \"not found\", by entity.",
    ),
    (
        CACHE_SINGLE_FLIGHT_JOINS,
        "Cache reads that joined a load already under way for the same key, by entity.",
    ),
    (
        CACHE_LOADER_ERRORS,
        "Loader (database) calls of the cache that failed, by entity.",
    ),
    (
        CACHE_LOADER_DURATION,
        "Time one loader (database) call of the cache took, in seconds, by entity.",
    ),
    (
        CACHE_L1_INVALIDATIONS,
        "Invalidations from other instances applied to the in-process cache, by entity.",
    ),
    (
        CACHE_WARMED,
        "Keys loaded into the cache by the warm-up at start, by entity.",
    ),
    (
        STORE_USER_EVENTS,
        "Store demo: customer events (joined, looking_around, served, left), by service.",
    ),
    (
        STORE_USERS_WAITING,
        "Store demo: customers who joined and wait to look around.",
    ),
    (
        STORE_USERS_ACTIVE,
        "Store demo: customers looking around, not yet served.",
    ),
    (
        STORE_USERS_SERVED,
        "Store demo: customers served since the api started.",
    ),
    (
        STORE_USERS_TOTAL,
        "Store demo: customers in the store (joined and not yet left).",
    ),
];

/// See [`ALL`].
pub const REDIS_STATE: &str = "holdfast_redis_connection_state";
/// See [`ALL`].
pub const REDIS_RECONNECTS: &str = "holdfast_redis_reconnects_total";
/// See [`ALL`].
pub const REDIS_BREAKER_STATE: &str = "holdfast_redis_breaker_state";
/// See [`ALL`].
pub const REDIS_COMMAND_ERRORS: &str = "holdfast_redis_command_errors_total";
/// See [`ALL`].
pub const CALLS: &str = "holdfast_calls_total";
/// See [`ALL`].
pub const CALL_DURATION: &str = "holdfast_call_duration_seconds";
/// See [`ALL`].
pub const CALLS_IN_FLIGHT: &str = "holdfast_calls_in_flight";
/// See [`ALL`].
pub const JOBS_ENQUEUED: &str = "holdfast_jobs_enqueued_total";
/// See [`ALL`].
pub const WORKER_HANDLED: &str = "holdfast_worker_handled_total";
/// See [`ALL`].
pub const WORKER_HANDLE_DURATION: &str = "holdfast_worker_handle_duration_seconds";
/// See [`ALL`].
pub const WORKER_ACTIVE: &str = "holdfast_worker_active_terminals";
/// See [`ALL`].
pub const WORKER_CAPACITY: &str = "holdfast_worker_terminals";
/// See [`ALL`].
pub const WORKER_CLAIMED: &str = "holdfast_worker_claimed_total";
/// See [`ALL`].
pub const DEAD_LETTERS: &str = "holdfast_dead_letters_total";
/// See [`ALL`].
pub const TOPIC_BACKLOG: &str = "holdfast_topic_backlog";
/// See [`ALL`].
pub const HTTP_REQUESTS: &str = "holdfast_http_requests_total";
/// See [`ALL`].
pub const HTTP_REQUEST_DURATION: &str = "holdfast_http_request_duration_seconds";
/// See [`ALL`].
pub const CACHE_READS: &str = "holdfast_cache_reads_total";
/// See [`ALL`].
pub const CACHE_NEGATIVE_HITS: &str = "holdfast_cache_negative_hits_total";
/// See [`ALL`].
pub const CACHE_SINGLE_FLIGHT_JOINS: &str = "holdfast_cache_single_flight_joins_total";
/// See [`ALL`].
pub const CACHE_LOADER_ERRORS: &str = "holdfast_cache_loader_errors_total";
/// See [`ALL`].
pub const CACHE_LOADER_DURATION: &str = "holdfast_cache_loader_duration_seconds";
/// See [`ALL`].
pub const CACHE_L1_INVALIDATIONS: &str = "holdfast_cache_l1_invalidations_total";
/// See [`ALL`].
pub const CACHE_WARMED: &str = "holdfast_cache_warmed_total";

// The store demo's names come from the seed metrics demo and are kept as
// they are, without the `holdfast_` prefix.
/// See [`ALL`].
pub const STORE_USER_EVENTS: &str = "user_events_total";
/// See [`ALL`].
pub const STORE_USERS_WAITING: &str = "users_waiting";
/// See [`ALL`].
pub const STORE_USERS_ACTIVE: &str = "users_active";
/// See [`ALL`].
pub const STORE_USERS_SERVED: &str = "users_served";
/// See [`ALL`].
pub const STORE_USERS_TOTAL: &str = "users_total";

/// Histogram buckets in seconds for latencies from sub-millisecond to tens of seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
