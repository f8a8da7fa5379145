//! Metric names and help texts, in one place for every crate.
//!
//! Names follow Prometheus conventions: `holdfast_` prefix, base units
//! (seconds, bytes), `_total` on counters. Labels stay low-cardinality
//! (topic, outcome, status), never ids.
//!
//! One exception: the metrics demo's names (`user_events_total`,
//! `users_waiting`, `users_active`, `users_served`, `users_total`,
//! `api_request_duration_seconds`, `api_errors_total`) are those the
//! reproduced store service exposed, without the `holdfast_` prefix, so
//! dashboards and queries written for it work unchanged.

/// Declares a list of `(name, help)` pairs and one constant per name, whose
/// documentation is its name and help text, so each is written once.
macro_rules! metric_list {
    ($(#[$list_doc:meta])* $list:ident { $( $konst:ident = $name:literal, $help:literal; )* }) => {
        $(#[$list_doc])*
        pub const $list: &[(&str, &str)] = &[$(($konst, $help)),*];
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $konst: &str = $name;
        )*
    };
}

metric_list! {
    /// `(name, help)` of every metric holdfast emits; the telemetry crate
    /// registers the help texts from this list.
    ALL {
        REDIS_STATE = "holdfast_redis_connection_state",
            "Redis connection state: 0 connecting, 1 ready, 2 reconnecting, 3 stuck, 4 disabled.";
        REDIS_RECONNECTS = "holdfast_redis_reconnects_total",
            "Connection attempts to Redis that followed a lost or failed connection.";
        REDIS_BREAKER_STATE = "holdfast_redis_breaker_state",
            "Redis circuit breaker: 0 closed, 1 open, 2 half open.";
        REDIS_COMMAND_ERRORS = "holdfast_redis_command_errors_total",
            "Redis commands that failed, by kind of failure.";
        CALLS = "holdfast_calls_total",
            "Calls made through a Caller, by topic and outcome.";
        CALL_DURATION = "holdfast_call_duration_seconds",
            "Time from enqueue to reply of a call, in seconds.";
        CALLS_IN_FLIGHT = "holdfast_calls_in_flight",
            "Calls waiting for a reply in this process.";
        JOBS_ENQUEUED = "holdfast_jobs_enqueued_total",
            "Jobs enqueued, by topic.";
        WORKER_HANDLED = "holdfast_worker_handled_total",
            "Requests handled by workers, by topic and outcome.";
        WORKER_HANDLE_DURATION = "holdfast_worker_handle_duration_seconds",
            "Time a handler spent on one request, in seconds.";
        WORKER_ACTIVE = "holdfast_worker_active_terminals",
            "Requests being handled right now (busy terminals).";
        WORKER_CAPACITY = "holdfast_worker_terminals",
            "Concurrent requests a worker may handle (terminals).";
        WORKER_CLAIMED = "holdfast_worker_claimed_total",
            "Entries claimed from other consumers after the claim timeout.";
        DEAD_LETTERS = "holdfast_dead_letters_total",
            "Entries moved to the dead-letter stream, by topic and reason.";
        TOPIC_BACKLOG = "holdfast_topic_backlog",
            "Entries waiting or in progress for a topic (group lag plus pending).";
        TOPIC_DRAIN_RATE = "holdfast_topic_drain_rate",
            "Entries per second a topic's workers take, learnt by a caller while entries were waiting.";
        HTTP_REQUESTS = "holdfast_http_requests_total",
            "HTTP requests answered, by route and status class.";
        HTTP_REQUEST_DURATION = "holdfast_http_request_duration_seconds",
            "HTTP request duration, in seconds.";
        HTTP_CONNECTIONS_REFUSED = "holdfast_http_connections_refused_total",
            "Connections closed at once because the listener had as many open as it takes.";
        CACHE_READS = "holdfast_cache_reads_total",
            "Cache reads answered, by entity and outcome (hit, miss, stale, bypass, error); the fallback rate is the bypass share.";
        CACHE_NEGATIVE_HITS = "holdfast_cache_negative_hits_total",
            "Cache hits on a cached \"not found\", by entity.";
        CACHE_SINGLE_FLIGHT_JOINS = "holdfast_cache_single_flight_joins_total",
            "Cache reads that joined a load already under way for the same key, by entity.";
        CACHE_LOADER_ERRORS = "holdfast_cache_loader_errors_total",
            "Loader (database) calls of the cache that failed, by entity.";
        CACHE_LOADER_DURATION = "holdfast_cache_loader_duration_seconds",
            "Time one loader (database) call of the cache took, in seconds, by entity.";
        CACHE_L1_INVALIDATIONS = "holdfast_cache_l1_invalidations_total",
            "Invalidations from other instances applied to the in-process cache, by entity.";
        CACHE_WARMED = "holdfast_cache_warmed_total",
            "Keys loaded into the cache by the warm-up at start, by entity.";
        // The metrics demo's names are kept as the service it reproduces
        // named them, without the `holdfast_` prefix.
        STORE_USER_EVENTS = "user_events_total",
            "Store demo: customer events (joined, looking_around, served, left), by service.";
        STORE_USERS_WAITING = "users_waiting",
            "Store demo: customers who joined and wait to look around.";
        STORE_USERS_ACTIVE = "users_active",
            "Store demo: customers looking around, not yet served.";
        STORE_USERS_SERVED = "users_served",
            "Store demo: customers served since the api started.";
        STORE_USERS_TOTAL = "users_total",
            "Store demo: customers in the store (joined and not yet left).";
        API_REQUEST_DURATION = "api_request_duration_seconds",
            "Metrics demo: time to answer an api request, in seconds, by endpoint (route template) and method.";
        API_ERRORS = "api_errors_total",
            "Metrics demo: api requests answered with a 4xx or 5xx, by endpoint (route template).";
    }
}

/// Histogram buckets in seconds for latencies from sub-millisecond to tens of seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

// exporter
//
// `holdfast exporter` renders these itself from Redis INFO and the topic
// streams on every scrape; they never pass through the `metrics` facade,
// so they have a list of their own rather than entries in [`ALL`].

metric_list! {
    /// `(name, help)` of every metric `holdfast exporter` computes at scrape
    /// time (the flushed aggregates it also serves keep their own names).
    EXPORTER {
        EXPORTER_REDIS_UP = "holdfast_redis_up",
            "1 when the exporter's INFO call to Redis answered, 0 when Redis is unreachable (then nothing else is reported).";
        EXPORTER_REDIS_MEMORY_USED = "holdfast_redis_memory_used_bytes",
            "Memory Redis has allocated, in bytes (INFO used_memory).";
        EXPORTER_REDIS_MEMORY_MAX = "holdfast_redis_memory_max_bytes",
            "Redis maxmemory in bytes; 0 means no limit.";
        EXPORTER_REDIS_CONNECTED_CLIENTS = "holdfast_redis_connected_clients",
            "Client connections open on Redis.";
        EXPORTER_REDIS_BLOCKED_CLIENTS = "holdfast_redis_blocked_clients",
            "Clients blocked in a blocking call (XREADGROUP BLOCK and the like).";
        EXPORTER_REDIS_OPS = "holdfast_redis_instantaneous_ops_per_second",
            "Commands per second Redis processes right now (INFO instantaneous_ops_per_sec).";
        EXPORTER_REDIS_COMMANDS = "holdfast_redis_commands_processed_total",
            "Commands Redis processed since it started.";
        EXPORTER_REDIS_KEYSPACE_HITS = "holdfast_redis_keyspace_hits_total",
            "Key lookups that found their key, since Redis started.";
        EXPORTER_REDIS_KEYSPACE_MISSES = "holdfast_redis_keyspace_misses_total",
            "Key lookups that found no key, since Redis started.";
        EXPORTER_REDIS_EVICTED_KEYS = "holdfast_redis_evicted_keys_total",
            "Keys evicted because of the maxmemory limit, since Redis started.";
        EXPORTER_REDIS_EXPIRED_KEYS = "holdfast_redis_expired_keys_total",
            "Keys removed because their TTL ran out, since Redis started.";
        EXPORTER_REDIS_DB_KEYS = "holdfast_redis_db_keys",
            "Keys in each Redis database, by db.";
        EXPORTER_REDIS_ROLE = "holdfast_redis_role",
            "Replication role of the Redis the exporter reads: 1 for the role it has (master or replica).";
        EXPORTER_REDIS_CONNECTED_REPLICAS = "holdfast_redis_connected_replicas",
            "Replicas connected to this Redis master.";
        EXPORTER_REDIS_REPLICA_LAG = "holdfast_redis_replica_lag_bytes",
            "How far each replica is behind this master, in bytes of replication stream, by replica (ip:port).";
        EXPORTER_REDIS_MASTER_LINK_UP = "holdfast_redis_master_link_up",
            "On a replica: 1 when its link to the master is up.";
        EXPORTER_REDIS_MASTER_LAST_IO = "holdfast_redis_master_last_io_seconds",
            "On a replica: seconds since it last heard from its master.";
        EXPORTER_REDIS_UPTIME = "holdfast_redis_uptime_seconds",
            "Seconds since Redis started.";
        EXPORTER_REDIS_RDB_LAST_SAVE = "holdfast_redis_rdb_last_save_timestamp_seconds",
            "Unix time of the last successful RDB save, in seconds.";
        EXPORTER_REDIS_RDB_CHANGES = "holdfast_redis_rdb_changes_since_last_save",
            "Writes since the last RDB save.";
        EXPORTER_REDIS_RDB_LAST_BGSAVE_OK = "holdfast_redis_rdb_last_bgsave_ok",
            "1 when the last RDB background save succeeded.";
        EXPORTER_REDIS_AOF_ENABLED = "holdfast_redis_aof_enabled",
            "1 when the append-only file is on.";
        EXPORTER_REDIS_AOF_LAST_WRITE_OK = "holdfast_redis_aof_last_write_ok",
            "1 when the last append-only file write succeeded.";
        EXPORTER_TOPIC_LENGTH = "holdfast_topic_length",
            "Entries in a topic partition's request stream (handled ones included until trimmed).";
        EXPORTER_TOPIC_LAG = "holdfast_topic_lag",
            "Entries of a topic partition not yet delivered to the worker group.";
        EXPORTER_TOPIC_PENDING = "holdfast_topic_pending",
            "Entries of a topic partition delivered to a worker and not yet acknowledged.";
        EXPORTER_TOPIC_CONSUMERS = "holdfast_topic_consumers",
            "Consumers known to the worker group of a topic partition (dead ones included until removed).";
        EXPORTER_TOPIC_DEAD_LETTERS = "holdfast_topic_dead_letters",
            "Entries in a topic partition's dead-letter stream.";
        EXPORTER_TOPIC_OLDEST_PENDING_AGE = "holdfast_topic_oldest_pending_age_seconds",
            "Age of the oldest delivered but unacknowledged entry of a topic partition, in seconds; 0 when none is pending.";
        EXPORTER_SCRAPE_DURATION = "holdfast_exporter_scrape_duration_seconds",
            "Time the exporter took to gather this scrape, in seconds.";
        EXPORTER_SCRAPE_SUCCESS = "holdfast_exporter_scrape_success",
            "1 when a part of the scrape (aggregates, topics) was read from Redis, 0 when it failed and is missing.";
    }
}

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

    /// The shipped Grafana dashboard and alert rules query only metrics
    /// the code exports (histograms also as `_bucket`, `_sum`, `_count`
    /// and the exporter's `_quantile`): a renamed metric fails here, not
    /// on an empty panel in production.
    #[test]
    fn the_grafana_dashboard_and_the_alert_rules_query_only_exported_metrics() {
        let files = [
            (
                "deploy/grafana/holdfast-dashboard.json",
                include_str!("../../../deploy/grafana/holdfast-dashboard.json"),
            ),
            (
                "deploy/prometheus/alerts.yml",
                include_str!("../../../deploy/prometheus/alerts.yml"),
            ),
        ];
        let exported = |name: &str| {
            ALL.iter().chain(EXPORTER).any(|(known, _)| {
                name == *known
                    || ["_bucket", "_sum", "_count", "_quantile"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(*known))
            })
        };
        for (file, text) in files {
            let mut queried = 0;
            for (at, _) in text.match_indices("holdfast_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                queried += 1;
                assert!(
                    exported(&name),
                    "{file} queries {name}, which nothing exports"
                );
            }
            assert!(queried > 5, "{file} queries next to nothing: {queried}");
        }
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
