//! Redis essentials from one `INFO` reply: memory, clients, operations,
//! persistence, replication and keys per database.

use std::collections::HashMap;

use holdfast_core::metric_names as names;
use holdfast_telemetry::exposition::{Exposition, MetricKind as Kind};

use super::help;

/// The `field:value` lines of an `INFO` reply.
pub(super) struct Info<'a>(HashMap<&'a str, &'a str>);

impl<'a> Info<'a> {
    pub(super) fn parse(text: &'a str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.trim_end().split_once(':'))
                .collect(),
        )
    }

    pub(super) fn get(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).copied()
    }

    pub(super) fn number(&self, field: &str) -> Option<f64> {
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

pub(super) fn render_info(out: &mut Exposition, info: &Info<'_>) {
    let plain = [
        (
            names::EXPORTER_REDIS_MEMORY_USED,
            "used_memory",
            Kind::Gauge,
        ),
        (names::EXPORTER_REDIS_MEMORY_MAX, "maxmemory", Kind::Gauge),
        (
            names::EXPORTER_REDIS_CONNECTED_CLIENTS,
            "connected_clients",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_BLOCKED_CLIENTS,
            "blocked_clients",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_OPS,
            "instantaneous_ops_per_sec",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_COMMANDS,
            "total_commands_processed",
            Kind::Counter,
        ),
        (
            names::EXPORTER_REDIS_KEYSPACE_HITS,
            "keyspace_hits",
            Kind::Counter,
        ),
        (
            names::EXPORTER_REDIS_KEYSPACE_MISSES,
            "keyspace_misses",
            Kind::Counter,
        ),
        (
            names::EXPORTER_REDIS_EVICTED_KEYS,
            "evicted_keys",
            Kind::Counter,
        ),
        (
            names::EXPORTER_REDIS_EXPIRED_KEYS,
            "expired_keys",
            Kind::Counter,
        ),
        (
            names::EXPORTER_REDIS_UPTIME,
            "uptime_in_seconds",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_RDB_LAST_SAVE,
            "rdb_last_save_time",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_RDB_CHANGES,
            "rdb_changes_since_last_save",
            Kind::Gauge,
        ),
        (
            names::EXPORTER_REDIS_AOF_ENABLED,
            "aof_enabled",
            Kind::Gauge,
        ),
    ];
    for (name, field, kind) in plain {
        if let Some(v) = info.number(field) {
            out.single(name, kind, help(name), v);
        }
    }
    let flags = [
        (
            names::EXPORTER_REDIS_RDB_LAST_BGSAVE_OK,
            "rdb_last_bgsave_status",
        ),
        (
            names::EXPORTER_REDIS_AOF_LAST_WRITE_OK,
            "aof_last_write_status",
        ),
    ];
    for (name, field) in flags {
        if let Some(v) = info.flag(field, "ok") {
            out.single(name, Kind::Gauge, help(name), v);
        }
    }

    let databases = info.numbered("db");
    if !databases.is_empty() {
        out.family(
            names::EXPORTER_REDIS_DB_KEYS,
            Kind::Gauge,
            help(names::EXPORTER_REDIS_DB_KEYS),
        );
        for (db, figures) in &databases {
            if let Some(keys) = figures.get("keys").and_then(|k| k.parse().ok()) {
                out.sample(names::EXPORTER_REDIS_DB_KEYS, "", [("db", *db)], keys);
            }
        }
    }

    let role = match info.get("role") {
        Some("master") => Some("master"),
        Some("slave") => Some("replica"),
        _ => None,
    };
    if let Some(role) = role {
        out.family(
            names::EXPORTER_REDIS_ROLE,
            Kind::Gauge,
            help(names::EXPORTER_REDIS_ROLE),
        );
        out.sample(names::EXPORTER_REDIS_ROLE, "", [("role", role)], 1.0);
    }
    if let Some(v) = info.number("connected_slaves") {
        out.single(
            names::EXPORTER_REDIS_CONNECTED_REPLICAS,
            Kind::Gauge,
            help(names::EXPORTER_REDIS_CONNECTED_REPLICAS),
            v,
        );
    }
    if role == Some("master")
        && let Some(master_offset) = info.number("master_repl_offset")
    {
        let replicas = info.numbered("slave");
        if !replicas.is_empty() {
            out.family(
                names::EXPORTER_REDIS_REPLICA_LAG,
                Kind::Gauge,
                help(names::EXPORTER_REDIS_REPLICA_LAG),
            );
            for (_, replica) in &replicas {
                let (Some(ip), Some(port), Some(offset)) = (
                    replica.get("ip"),
                    replica.get("port"),
                    replica.get("offset").and_then(|o| o.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let address = format!("{ip}:{port}");
                out.sample(
                    names::EXPORTER_REDIS_REPLICA_LAG,
                    "",
                    [("replica", address.as_str())],
                    (master_offset - offset).max(0.0),
                );
            }
        }
    }
    if role == Some("replica") {
        if let Some(v) = info.flag("master_link_status", "up") {
            out.single(
                names::EXPORTER_REDIS_MASTER_LINK_UP,
                Kind::Gauge,
                help(names::EXPORTER_REDIS_MASTER_LINK_UP),
                v,
            );
        }
        // -1 means the link has never been up: no figure rather than a
        // negative age.
        if let Some(v) = info
            .number("master_last_io_seconds_ago")
            .filter(|v| *v >= 0.0)
        {
            out.single(
                names::EXPORTER_REDIS_MASTER_LAST_IO,
                Kind::Gauge,
                help(names::EXPORTER_REDIS_MASTER_LAST_IO),
                v,
            );
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
