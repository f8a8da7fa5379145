//! Redis essentials from one `INFO` reply: memory, clients, operations,
//! persistence, replication and keys per database.

use std::collections::HashMap;

use holdfast_core::metric_names as names;
use holdfast_telemetry::exposition::{Exposition, MetricKind as Kind};

use super::families::{gauge, labelled_gauges, single};

/// The `field:value` lines of an `INFO` reply.
pub(crate) struct Info<'a>(HashMap<&'a str, &'a str>);

impl<'a> Info<'a> {
    pub(crate) fn parse(text: &'a str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.trim_end().split_once(':'))
                .collect(),
        )
    }

    pub(crate) fn get(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).copied()
    }

    pub(crate) fn number(&self, field: &str) -> Option<f64> {
        self.get(field)?.parse().ok()
    }

    /// 1 when `field` is `expected`, 0 when it is something else.
    pub(super) fn flag(&self, field: &str, expected: &str) -> Option<f64> {
        self.get(field)
            .map(|v| if v == expected { 1.0 } else { 0.0 })
    }

    /// `slaveN` and `dbN` lines, whose values are `k=v,k=v` lists.
    pub(super) fn numbered(&self, prefix: &str) -> Vec<(&'a str, HashMap<&'a str, &'a str>)> {
        let mut found: Vec<_> = self
            .0
            .iter()
            .filter(|(field, _)| {
                field
                    .strip_prefix(prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(field, list)| {
                let pairs = list
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .collect();
                (&field[prefix.len()..], pairs)
            })
            .collect();
        found.sort_by_key(|(n, _)| n.parse::<u32>().unwrap_or(u32::MAX));
        found
    }
}

/// The Redis figures of one `INFO` reply; a figure `INFO` does not give is
/// left out.
pub(super) fn render_info(out: &mut Exposition, info: &Info<'_>) {
    use Kind::{Counter, Gauge};
    // Numbers as `INFO` gives them; `ok` statuses as 1, anything else as 0.
    let figures = [
        (
            names::EXPORTER_REDIS_MEMORY_USED,
            Gauge,
            info.number("used_memory"),
        ),
        (
            names::EXPORTER_REDIS_MEMORY_MAX,
            Gauge,
            info.number("maxmemory"),
        ),
        (
            names::EXPORTER_REDIS_CONNECTED_CLIENTS,
            Gauge,
            info.number("connected_clients"),
        ),
        (
            names::EXPORTER_REDIS_BLOCKED_CLIENTS,
            Gauge,
            info.number("blocked_clients"),
        ),
        (
            names::EXPORTER_REDIS_OPS,
            Gauge,
            info.number("instantaneous_ops_per_sec"),
        ),
        (
            names::EXPORTER_REDIS_COMMANDS,
            Counter,
            info.number("total_commands_processed"),
        ),
        (
            names::EXPORTER_REDIS_KEYSPACE_HITS,
            Counter,
            info.number("keyspace_hits"),
        ),
        (
            names::EXPORTER_REDIS_KEYSPACE_MISSES,
            Counter,
            info.number("keyspace_misses"),
        ),
        (
            names::EXPORTER_REDIS_EVICTED_KEYS,
            Counter,
            info.number("evicted_keys"),
        ),
        (
            names::EXPORTER_REDIS_EXPIRED_KEYS,
            Counter,
            info.number("expired_keys"),
        ),
        (
            names::EXPORTER_REDIS_UPTIME,
            Gauge,
            info.number("uptime_in_seconds"),
        ),
        (
            names::EXPORTER_REDIS_RDB_LAST_SAVE,
            Gauge,
            info.number("rdb_last_save_time"),
        ),
        (
            names::EXPORTER_REDIS_RDB_CHANGES,
            Gauge,
            info.number("rdb_changes_since_last_save"),
        ),
        (
            names::EXPORTER_REDIS_AOF_ENABLED,
            Gauge,
            info.number("aof_enabled"),
        ),
        (
            names::EXPORTER_REDIS_RDB_LAST_BGSAVE_OK,
            Gauge,
            info.flag("rdb_last_bgsave_status", "ok"),
        ),
        (
            names::EXPORTER_REDIS_AOF_LAST_WRITE_OK,
            Gauge,
            info.flag("aof_last_write_status", "ok"),
        ),
    ];
    for (name, kind, value) in figures {
        if let Some(value) = value {
            single(out, name, kind, value);
        }
    }

    let databases = info.numbered("db");
    let keys = databases.iter().map(|(db, figures)| {
        let keys = figures.get("keys")?.parse().ok()?;
        Some((*db, keys))
    });
    labelled_gauges(out, names::EXPORTER_REDIS_DB_KEYS, "db", keys);

    let role = match info.get("role") {
        Some("master") => Some("master"),
        Some("slave") => Some("replica"),
        _ => None,
    };
    let current_role = role.map(|role| Some((role, 1.0)));
    labelled_gauges(out, names::EXPORTER_REDIS_ROLE, "role", current_role);
    if let Some(replicas) = info.number("connected_slaves") {
        gauge(out, names::EXPORTER_REDIS_CONNECTED_REPLICAS, replicas);
    }
    if role == Some("master")
        && let Some(master_offset) = info.number("master_repl_offset")
    {
        let replicas = info.numbered("slave");
        let lags = replicas.iter().map(|(_, replica)| {
            let (ip, port) = (replica.get("ip")?, replica.get("port")?);
            let offset: f64 = replica.get("offset")?.parse().ok()?;
            Some((format!("{ip}:{port}"), (master_offset - offset).max(0.0)))
        });
        labelled_gauges(out, names::EXPORTER_REDIS_REPLICA_LAG, "replica", lags);
    }
    if role == Some("replica") {
        if let Some(up) = info.flag("master_link_status", "up") {
            gauge(out, names::EXPORTER_REDIS_MASTER_LINK_UP, up);
        }
        // -1 means the link has never been up: no figure rather than a
        // negative age.
        if let Some(seconds) = info
            .number("master_last_io_seconds_ago")
            .filter(|v| *v >= 0.0)
        {
            gauge(out, names::EXPORTER_REDIS_MASTER_LAST_IO, seconds);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_of_a_master_with_a_replica_gives_role_lag_and_keys() {
        let text = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
            slave0:ip=10.0.0.2,port=6380,state=online,offset=90,lag=0\r\n\
            master_repl_offset:100\r\n# Keyspace\r\ndb0:keys=7,expires=1,avg_ttl=0\r\n\
            rdb_last_bgsave_status:err\r\nused_memory:1024\r\n";
        let mut out = Exposition::default();
        render_info(&mut out, &Info::parse(text));
        for line in [
            "holdfast_redis_role{role=\"master\"} 1",
            "holdfast_redis_connected_replicas 1",
            "holdfast_redis_replica_lag_bytes{replica=\"10.0.0.2:6380\"} 10",
            "holdfast_redis_db_keys{db=\"0\"} 7",
            "holdfast_redis_rdb_last_bgsave_ok 0",
            "holdfast_redis_memory_used_bytes 1024",
        ] {
            assert!(
                out.as_str().lines().any(|l| l == line),
                "{line} in\n{}",
                out.as_str()
            );
        }
    }

    #[test]
    fn a_replica_reports_its_link_and_last_contact() {
        let text = "role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\n";
        let mut out = Exposition::default();
        render_info(&mut out, &Info::parse(text));
        assert!(
            out.as_str()
                .contains("holdfast_redis_role{role=\"replica\"} 1\n")
        );
        assert!(out.as_str().contains("holdfast_redis_master_link_up 0\n"));
        assert!(
            !out.as_str()
                .contains("holdfast_redis_master_last_io_seconds ")
        );
    }
}
