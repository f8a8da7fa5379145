//! Metric names and help texts, in one place for every crate.
//!
//! Names follow Prometheus conventions: `holdfast_` prefix, base units
//! (seconds, bytes), `_total` on counters. Labels stay low-cardinality
//! (topic, outcome, status), never ids.
//!
//! One exception: the metrics demo's names (`user_events_total`,
//! `users_waiting`, `users_active`, `users_served`, `users_total`,
//! `api_request_duration_seconds`, `api_errors_total`) are the seed metrics
//! demo's, without the `holdfast_` prefix, so its dashboards and queries
//! work unchanged.

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
    (
        API_REQUEST_DURATION,
        "Metrics demo: time to answer an api request, in seconds, by endpoint (route template) and method.",
    ),
    (
        API_ERRORS,
        "Metrics demo: api requests answered with a 4xx or 5xx, by endpoint (route template).",
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
/// See [`ALL`].
pub const API_REQUEST_DURATION: &str = "api_request_duration_seconds";
/// See [`ALL`].
pub const API_ERRORS: &str = "api_errors_total";

/// Histogram buckets in seconds for latencies from sub-millisecond to tens of seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

// exporter
//
// `holdfast exporter` renders these itself from Redis INFO and the topic
// streams on every scrape; they never pass through the `metrics` facade,
// so they have a list of their own rather than entries in [`ALL`].

/// `(name, help)` of every metric `holdfast exporter` computes at scrape
/// time (the flushed aggregates it also serves keep their own names).
pub const EXPORTER: &[(&str, &str)] = &[
    (
        EXPORTER_REDIS_UP,
        "1 when the exporter's INFO call to Redis answered, 0 when Redis is unreachable (then nothing else is reported).",
    ),
    (
        EXPORTER_REDIS_MEMORY_USED,
        "Memory Redis has allocated, in bytes (INFO used_memory).",
    ),
    (
        EXPORTER_REDIS_MEMORY_MAX,
        "Redis maxmemory in bytes; 0 means no limit.",
    ),
    (
        EXPORTER_REDIS_CONNECTED_CLIENTS,
        "Client connections open on Redis.",
    ),
    (
        EXPORTER_REDIS_BLOCKED_CLIENTS,
        "Clients blocked in a blocking call (XREADGROUP BLOCK and the like).",
    ),
    (
        EXPORTER_REDIS_OPS,
        "Commands per second Redis processes right now (INFO instantaneous_ops_per_sec).",
    ),
    (
        EXPORTER_REDIS_COMMANDS,
        "Commands Redis processed since it started.",
    ),
    (
        EXPORTER_REDIS_KEYSPACE_HITS,
        "Key lookups that found their key, since Redis started.",
    ),
    (
        EXPORTER_REDIS_KEYSPACE_MISSES,
        "Key lookups that found no key, since Redis started.",
    ),
    (
        EXPORTER_REDIS_EVICTED_KEYS,
        "Keys evicted because of the maxmemory limit, since Redis started.",
    ),
    (
        EXPORTER_REDIS_EXPIRED_KEYS,
        "Keys removed because their TTL ran out, since Redis started.",
    ),
    (
        EXPORTER_REDIS_DB_KEYS,
        "Keys in each Redis database, by db.",
    ),
    (
        EXPORTER_REDIS_ROLE,
        "Replication role of the Redis the exporter reads: 1 for the role it has (master or replica).",
    ),
    (
        EXPORTER_REDIS_CONNECTED_REPLICAS,
        "Replicas connected to this Redis master.",
    ),
    (
        EXPORTER_REDIS_REPLICA_LAG,
        "How far each replica is behind this master, in bytes of replication stream, by replica (ip:port).",
    ),
    (
        EXPORTER_REDIS_MASTER_LINK_UP,
        "On a replica: 1 when its link to the master is up.",
    ),
    (
        EXPORTER_REDIS_MASTER_LAST_IO,
        "On a replica: seconds since it last heard from its master.",
    ),
    (EXPORTER_REDIS_UPTIME, "Seconds since Redis started."),
    (
        EXPORTER_REDIS_RDB_LAST_SAVE,
        "Unix time of the last successful RDB save, in seconds.",
    ),
    (
        EXPORTER_REDIS_RDB_CHANGES,
        "Writes since the last RDB save.",
    ),
    (
        EXPORTER_REDIS_RDB_LAST_BGSAVE_OK,
        "1 when the last RDB background save succeeded.",
    ),
    (
        EXPORTER_REDIS_AOF_ENABLED,
        "1 when the append-only file is on.",
    ),
    (
        EXPORTER_REDIS_AOF_LAST_WRITE_OK,
        "1 when the last append-only file write succeeded.",
    ),
    (
        EXPORTER_TOPIC_LENGTH,
        "Entries in a topic partition's request stream (handled ones included until trimmed).",
    ),
    (
        EXPORTER_TOPIC_LAG,
        "Entries of a topic partition not yet delivered to the worker group.",
    ),
    (
        EXPORTER_TOPIC_PENDING,
        "Entries of a topic partition delivered to a worker and not yet acknowledged.",
    ),
    (
        EXPORTER_TOPIC_CONSUMERS,
        "Consumers known to the worker group of a topic partition (dead ones included until removed).",
    ),
    (
        EXPORTER_TOPIC_DEAD_LETTERS,
        "Entries in a topic partition's dead-letter stream.",
    ),
    (
        EXPORTER_TOPIC_OLDEST_PENDING_AGE,
        "Age of the oldest delivered but unacknowledged entry of a topic partition, in seconds; 0 when none is pending.",
    ),
    (
        EXPORTER_SCRAPE_DURATION,
        "Time the exporter took to gather this scrape, in seconds.",
    ),
    (
        EXPORTER_SCRAPE_SUCCESS,
        "1 when a part of the scrape (aggregates, topics) was read from Redis, 0 when it failed and is missing.",
    ),
];

/// See [`EXPORTER`].
pub const EXPORTER_REDIS_UP: &str = "holdfast_redis_up";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_MEMORY_USED: &str = "holdfast_redis_memory_used_bytes";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_MEMORY_MAX: &str = "holdfast_redis_memory_max_bytes";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_CONNECTED_CLIENTS: &str = "holdfast_redis_connected_clients";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_BLOCKED_CLIENTS: &str = "holdfast_redis_blocked_clients";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_OPS: &str = "holdfast_redis_instantaneous_ops_per_second";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_COMMANDS: &str = "holdfast_redis_commands_processed_total";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_KEYSPACE_HITS: &str = "holdfast_redis_keyspace_hits_total";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_KEYSPACE_MISSES: &str = "holdfast_redis_keyspace_misses_total";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_EVICTED_KEYS: &str = "holdfast_redis_evicted_keys_total";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_EXPIRED_KEYS: &str = "holdfast_redis_expired_keys_total";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_DB_KEYS: &str = "holdfast_redis_db_keys";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_ROLE: &str = "holdfast_redis_role";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_CONNECTED_REPLICAS: &str = "holdfast_redis_connected_replicas";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_REPLICA_LAG: &str = "holdfast_redis_replica_lag_bytes";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_MASTER_LINK_UP: &str = "holdfast_redis_master_link_up";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_MASTER_LAST_IO: &str = "holdfast_redis_master_last_io_seconds";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_UPTIME: &str = "holdfast_redis_uptime_seconds";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_RDB_LAST_SAVE: &str = "holdfast_redis_rdb_last_save_timestamp_seconds";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_RDB_CHANGES: &str = "holdfast_redis_rdb_changes_since_last_save";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_RDB_LAST_BGSAVE_OK: &str = "holdfast_redis_rdb_last_bgsave_ok";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_AOF_ENABLED: &str = "holdfast_redis_aof_enabled";
/// See [`EXPORTER`].
pub const EXPORTER_REDIS_AOF_LAST_WRITE_OK: &str = "holdfast_redis_aof_last_write_ok";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_LENGTH: &str = "holdfast_topic_length";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_LAG: &str = "holdfast_topic_lag";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_PENDING: &str = "holdfast_topic_pending";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_CONSUMERS: &str = "holdfast_topic_consumers";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_DEAD_LETTERS: &str = "holdfast_topic_dead_letters";
/// See [`EXPORTER`].
pub const EXPORTER_TOPIC_OLDEST_PENDING_AGE: &str = "holdfast_topic_oldest_pending_age_seconds";
/// See [`EXPORTER`].
pub const EXPORTER_SCRAPE_DURATION: &str = "holdfast_exporter_scrape_duration_seconds";
/// See [`EXPORTER`].
pub const EXPORTER_SCRAPE_SUCCESS: &str = "holdfast_exporter_scrape_success";

#[cfg(test)]
mod tests {
    use super::{ALL, EXPORTER};

    /// docs/observability.md promises every metric with its meaning and
    /// alert; a metric added here without a line there fails this test.
    #[test]
    fn every_metric_is_documented_in_observability_md() {
        let doc = include_str!("../../../docs/observability.md");
        let missing: Vec<&str> = ALL
            .iter()
            .chain(EXPORTER)
            .map(|(name, _)| *name)
            .filter(|name| !doc.contains(&format!("`{name}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/observability.md: {missing:?}"
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = ALL.iter().chain(EXPORTER).map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a metric name is listed twice");
    }
}
