//! The exporter role: one Prometheus endpoint for what lives in Redis.
//!
//! Every scrape of `GET /metrics` is computed fresh from Redis, in a few
//! round trips:
//! 1. one pipeline with `INFO` (Redis essentials) and the first `SCAN` page
//!    over the request streams (topic discovery; never `KEYS`), followed by
//!    the remaining `SCAN` pages, if any;
//! 2. one pipeline with, per topic partition, `XLEN` of the request and
//!    dead-letter streams, `XINFO GROUPS` and the `XPENDING` summary; its
//!    errors are per command (`ignore_errors`), so a key of the wrong type
//!    or a stream without a group costs that figure only;
//! 3. alongside 2, the metric aggregates every role flushes into Redis,
//!    rendered by the telemetry crate.
//!
//! When Redis does not answer, the scrape still answers 200 at once with
//! `holdfast_redis_up 0` and nothing else: figures that could not be read
//! are missing rather than zero, so no alert mistakes an outage for an
//! empty queue. The role is ready whenever it can answer a scrape, since a
//! scrape is how Redis being down gets reported.
//!
//! [`Scraper`] does the work and is usable on its own (benchmarks);
//! [`Exporter`] binds the listener and serves it with `/health*` through the
//! shared middleware stack.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_core::{Deadline, Keys, Topic, metric_names as names};
use holdfast_redis::redis::{self, Value};
use holdfast_redis::{ConnState, Redis, RedisConfig, RedisError};
use holdfast_streams::value;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::health::{Health, HealthCheck, health_routes};
use crate::http::{StackConfig, serve, stack};

/// Default port of `holdfast exporter` (the seed's sidecar had it).
pub const DEFAULT_PORT: u16 = 9121;

/// The content type of Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Scrapes computed at once; further ones wait for a permit. Each scrape
/// costs Redis a few pipelines, so several Prometheus servers (or a person
/// refreshing a browser) cannot multiply that load without bound.
const MAX_CONCURRENT_SCRAPES: usize = 4;

/// Keys examined per `SCAN` call: large enough that discovery takes few
/// round trips, small enough that each call blocks Redis for well under a
/// millisecond.
const SCAN_COUNT: usize = 1000;

/// Topic partitions reported at most, so a keyspace full of look-alike keys
/// cannot make one scrape unbounded.
const MAX_PARTITIONS: usize = 10_000;

/// The metric aggregates flushed to Redis by every role, as Prometheus
/// text, read and rendered by the telemetry crate.
async fn scrape_aggregates(redis: &Redis, prefix: &str) -> Result<String, RedisError> {
    holdfast_telemetry::aggregate::scrape(redis, prefix).await
}

/// Settings of the exporter role.
#[derive(Clone, Debug)]
pub struct ExporterSettings {
    /// Listener for `/metrics` and `/health*` (default `0.0.0.0:9121`).
    pub listen: SocketAddr,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Key layout (prefix) of the aggregates and the topic streams.
    pub keys: Keys,
    /// Topics to report; `None` discovers them with `SCAN`.
    pub topics: Option<Vec<Topic>>,
    /// Partitions of each topic in `topics` (discovery finds them itself).
    pub partitions: u16,
    /// Limits of the listener.
    pub stack: StackConfig,
}

impl ExporterSettings {
    /// Defaults: port 9121 on every interface, prefix `hf`, topics discovered.
    pub fn new(redis: RedisConfig) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            redis,
            keys: Keys::default(),
            topics: None,
            partitions: 1,
            stack: StackConfig::default(),
        }
    }
}

/// Computes one exposition from Redis.
pub struct Scraper {
    redis: Redis,
    keys: Keys,
    topics: Option<Vec<Topic>>,
    partitions: u16,
    /// See [`MAX_CONCURRENT_SCRAPES`]; never closed.
    scrapes: Semaphore,
}

/// One topic partition found in Redis (or named on the command line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Partition {
    /// As found in the key; keys written by other tools may hold any text.
    topic: String,
    partition: u16,
    request_stream: String,
    dead_letter_stream: String,
}

/// Figures of one partition; `None` where Redis did not say.
#[derive(Debug, Default)]
struct PartitionFigures {
    length: u64,
    lag: u64,
    pending: u64,
    consumers: u64,
    dead_letters: Option<u64>,
    oldest_pending_age_seconds: f64,
}

impl Scraper {
    /// Reports the topics under `keys`: those in `topics` with `partitions`
    /// partitions each, or every topic found when `topics` is `None`.
    pub fn new(redis: Redis, keys: Keys, topics: Option<Vec<Topic>>, partitions: u16) -> Self {
        Self {
            redis,
            keys,
            topics,
            partitions: partitions.max(1),
            scrapes: Semaphore::new(MAX_CONCURRENT_SCRAPES),
        }
    }

    /// The exposition: the flushed aggregates, Redis essentials and topic
    /// figures, or only `holdfast_redis_up 0` when Redis does not answer.
    pub async fn render(&self) -> String {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.scrapes.acquire().await;
        let started = Instant::now();
        let timeout = self.redis.config().command_timeout;
        let pattern = self.keys.request_stream_pattern();
        let mut out = Exposition::default();

        let mut first = redis::pipe();
        first.ignore_errors().cmd("INFO");
        if self.topics.is_none() {
            first
                .cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
        }
        let replies: Vec<Value> = match self.redis.pipe(&first, timeout).await {
            Ok(replies) => replies,
            Err(err) => {
                tracing::debug!(error = %err, "redis did not answer the scrape");
                out.single(names::EXPORTER_REDIS_UP, Kind::Gauge, 0.0);
                return out.text;
            }
        };
        let mut replies = replies.into_iter();
        let info = replies.next();
        let first_scan = replies.next();

        let (aggregates, topics) = tokio::join!(
            scrape_aggregates(&self.redis, self.keys.prefix()),
            self.topic_figures(first_scan, &pattern)
        );

        let mut success = Vec::new();
        match aggregates {
            Ok(text) => {
                out.text.push_str(&text);
                if !out.text.is_empty() && !out.text.ends_with('\n') {
                    out.text.push('\n');
                }
                success.push(("aggregates", 1.0));
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read the flushed metric aggregates");
                success.push(("aggregates", 0.0));
            }
        }
        out.single(names::EXPORTER_REDIS_UP, Kind::Gauge, 1.0);
        match info.as_ref().and_then(text_of) {
            Some(info) => render_info(&mut out, &Info::parse(&info)),
            None => tracing::warn!("redis answered INFO with an error; its figures are missing"),
        }
        match topics {
            Ok(topics) => {
                render_topics(&mut out, &topics);
                success.push(("topics", 1.0));
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read the topic streams");
                success.push(("topics", 0.0));
            }
        }
        out.family(names::EXPORTER_SCRAPE_SUCCESS, Kind::Gauge);
        for (part, ok) in success {
            out.sample(names::EXPORTER_SCRAPE_SUCCESS, &[("part", part)], ok);
        }
        out.single(
            names::EXPORTER_SCRAPE_DURATION,
            Kind::Gauge,
            started.elapsed().as_secs_f64(),
        );
        out.text
    }

    /// The partitions to report, sorted: named ones, or those discovered by
    /// `SCAN`, starting from the first page the caller already fetched.
    async fn partitions(
        &self,
        first_scan: Option<Value>,
        pattern: &str,
    ) -> Result<Vec<Partition>, RedisError> {
        let mut found: Vec<(String, u16)> = Vec::new();
        if let Some(topics) = &self.topics {
            for topic in topics {
                for partition in 0..self.partitions {
                    found.push((topic.as_str().to_owned(), partition));
                }
            }
        } else {
            let mut page = first_scan;
            loop {
                let (cursor, keys) = match page.as_ref().map(scan_page) {
                    Some(Some(parsed)) => parsed,
                    _ => {
                        return Err(RedisError::Server(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "SCAN answered with something other than a page",
                        ))));
                    }
                };
                for key in keys {
                    if let Some((topic, partition)) = self.keys.parse_request_stream(&key) {
                        found.push((topic.to_owned(), partition));
                    }
                }
                if cursor == "0" || found.len() >= MAX_PARTITIONS {
                    break;
                }
                page = Some(
                    self.redis
                        .cmd(
                            redis::cmd("SCAN")
                                .arg(&cursor)
                                .arg("MATCH")
                                .arg(pattern)
                                .arg("COUNT")
                                .arg(SCAN_COUNT),
                        )
                        .await?,
                );
            }
        }
        // SCAN may return a key more than once.
        found.sort();
        found.dedup();
        if found.len() > MAX_PARTITIONS {
            tracing::warn!(
                found = found.len(),
                reported = MAX_PARTITIONS,
                "too many topic partitions; reporting the first ones only"
            );
            found.truncate(MAX_PARTITIONS);
        }
        Ok(found
            .into_iter()
            .map(|(topic, partition)| Partition {
                request_stream: raw_stream_key(self.keys.prefix(), &topic, partition, "req"),
                dead_letter_stream: raw_stream_key(self.keys.prefix(), &topic, partition, "dead"),
                topic,
                partition,
            })
            .collect())
    }

    async fn topic_figures(
        &self,
        first_scan: Option<Value>,
        pattern: &str,
    ) -> Result<Vec<(Partition, PartitionFigures)>, RedisError> {
        let partitions = self.partitions(first_scan, pattern).await?;
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for p in &partitions {
            pipe.cmd("XLEN")
                .arg(&p.request_stream)
                .cmd("XLEN")
                .arg(&p.dead_letter_stream)
                .cmd("XINFO")
                .arg("GROUPS")
                .arg(&p.request_stream)
                .cmd("XPENDING")
                .arg(&p.request_stream)
                .arg(Keys::GROUP);
        }
        let replies: Vec<Value> = self
            .redis
            .pipe(&pipe, self.redis.config().command_timeout)
            .await?;
        let now_ms = Deadline::now_unix_ms();
        Ok(partitions
            .into_iter()
            .zip(replies.chunks_exact(4))
            .filter_map(|(p, replies)| {
                let figures = partition_figures(replies, now_ms);
                if figures.is_none() {
                    tracing::debug!(key = %p.request_stream, "not a stream; skipped");
                }
                Some((p, figures?))
            })
            .collect())
    }
}

/// `{prefix}:{topic:partition}:{kind}` for a topic name that may not be a
/// valid [`Topic`] (discovered keys are reported as found).
fn raw_stream_key(prefix: &str, topic: &str, partition: u16, kind: &str) -> String {
    format!("{prefix}:{{{topic}:{partition}}}:{kind}")
}

/// Reads the replies of `XLEN req`, `XLEN dead`, `XINFO GROUPS`, `XPENDING`;
/// `None` when the request stream is not a stream.
fn partition_figures(replies: &[Value], now_ms: u64) -> Option<PartitionFigures> {
    let [length, dead, groups, pending_summary] = replies else {
        return None;
    };
    let length = non_negative(length)?;
    let mut figures = PartitionFigures {
        length,
        dead_letters: non_negative(dead),
        ..PartitionFigures::default()
    };
    let group = match groups {
        Value::Array(items) => items
            .iter()
            .find(|g| value::field(g, "name").and_then(text_of).as_deref() == Some(Keys::GROUP)),
        _ => None,
    };
    let Some(group) = group else {
        // No workers yet: everything is waiting.
        figures.lag = length;
        return Some(figures);
    };
    figures.pending = value::field(group, "pending")
        .and_then(non_negative)
        .unwrap_or(0);
    // `lag` is nil when Redis cannot compute it (after deletions); the
    // length minus pending is then the safe, larger estimate.
    figures.lag = value::field(group, "lag")
        .and_then(non_negative)
        .unwrap_or(length.saturating_sub(figures.pending));
    figures.consumers = value::field(group, "consumers")
        .and_then(non_negative)
        .unwrap_or(0);
    if figures.pending > 0
        && let Value::Array(parts) = pending_summary
        && let Some(oldest_ms) = parts.get(1).and_then(text_of).and_then(|id| id_ms(&id))
    {
        figures.oldest_pending_age_seconds = now_ms.saturating_sub(oldest_ms) as f64 / 1000.0;
    }
    Some(figures)
}

/// The cursor and keys of a `SCAN` reply.
fn scan_page(v: &Value) -> Option<(String, Vec<String>)> {
    let Value::Array(parts) = v else {
        return None;
    };
    let cursor = text_of(parts.first()?)?;
    let keys = match parts.get(1)? {
        Value::Array(keys) => keys.iter().filter_map(text_of).collect(),
        _ => return None,
    };
    Some((cursor, keys))
}

/// The millisecond part of a stream entry id.
fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

fn non_negative(v: &Value) -> Option<u64> {
    value::int(v).and_then(|i| u64::try_from(i).ok())
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The `field:value` lines of an `INFO` reply.
struct Info<'a>(HashMap<&'a str, &'a str>);

impl<'a> Info<'a> {
    fn parse(text: &'a str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.trim_end().split_once(':'))
                .collect(),
        )
    }

    fn get(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).copied()
    }

    fn number(&self, field: &str) -> Option<f64> {
        self.get(field)?.parse().ok()
    }

    /// 1 when `field` is `expected`, 0 when it is something else.
    fn flag(&self, field: &str, expected: &str) -> Option<f64> {
        self.get(field)
            .map(|v| if v == expected { 1.0 } else { 0.0 })
    }

    /// `slaveN` and `dbN` lines, whose values are `k=v,k=v` lists.
    fn numbered(&self, prefix: &str) -> Vec<(&'a str, HashMap<&'a str, &'a str>)> {
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

fn render_info(out: &mut Exposition, info: &Info<'_>) {
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
            out.single(name, kind, v);
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
            out.single(name, Kind::Gauge, v);
        }
    }

    let databases = info.numbered("db");
    if !databases.is_empty() {
        out.family(names::EXPORTER_REDIS_DB_KEYS, Kind::Gauge);
        for (db, figures) in &databases {
            if let Some(keys) = figures.get("keys").and_then(|k| k.parse().ok()) {
                out.sample(names::EXPORTER_REDIS_DB_KEYS, &[("db", db)], keys);
            }
        }
    }

    let role = match info.get("role") {
        Some("master") => Some("master"),
        Some("slave") => Some("replica"),
        _ => None,
    };
    if let Some(role) = role {
        out.family(names::EXPORTER_REDIS_ROLE, Kind::Gauge);
        out.sample(names::EXPORTER_REDIS_ROLE, &[("role", role)], 1.0);
    }
    if let Some(v) = info.number("connected_slaves") {
        out.single(names::EXPORTER_REDIS_CONNECTED_REPLICAS, Kind::Gauge, v);
    }
    if role == Some("master")
        && let Some(master_offset) = info.number("master_repl_offset")
    {
        let replicas = info.numbered("slave");
        if !replicas.is_empty() {
            out.family(names::EXPORTER_REDIS_REPLICA_LAG, Kind::Gauge);
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
                    &[("replica", &address)],
                    (master_offset - offset).max(0.0),
                );
            }
        }
    }
    if role == Some("replica") {
        if let Some(v) = info.flag("master_link_status", "up") {
            out.single(names::EXPORTER_REDIS_MASTER_LINK_UP, Kind::Gauge, v);
        }
        // -1 means the link has never been up: no figure rather than a
        // negative age.
        if let Some(v) = info
            .number("master_last_io_seconds_ago")
            .filter(|v| *v >= 0.0)
        {
            out.single(names::EXPORTER_REDIS_MASTER_LAST_IO, Kind::Gauge, v);
        }
    }
}

fn render_topics(out: &mut Exposition, topics: &[(Partition, PartitionFigures)]) {
    if topics.is_empty() {
        return;
    }
    type Figure = fn(&PartitionFigures) -> Option<f64>;
    let families: [(&str, Figure); 6] = [
        (names::EXPORTER_TOPIC_LENGTH, |f| Some(f.length as f64)),
        (names::EXPORTER_TOPIC_LAG, |f| Some(f.lag as f64)),
        (names::EXPORTER_TOPIC_PENDING, |f| Some(f.pending as f64)),
        (names::EXPORTER_TOPIC_CONSUMERS, |f| {
            Some(f.consumers as f64)
        }),
        (names::EXPORTER_TOPIC_DEAD_LETTERS, |f| {
            f.dead_letters.map(|d| d as f64)
        }),
        (names::EXPORTER_TOPIC_OLDEST_PENDING_AGE, |f| {
            Some(f.oldest_pending_age_seconds)
        }),
    ];
    for (name, figure) in families {
        out.family(name, Kind::Gauge);
        for (p, figures) in topics {
            if let Some(v) = figure(figures) {
                let partition = p.partition.to_string();
                out.sample(name, &[("topic", &p.topic), ("partition", &partition)], v);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// Prometheus text format 0.0.4, written family by family.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` lines; the help text comes from
    /// [`names::EXPORTER`].
    fn family(&mut self, name: &str, kind: Kind) {
        let help = names::EXPORTER
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, help)| help);
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (n, (label, v)) in labels.iter().enumerate() {
                if n > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, value: f64) {
        self.family(name, kind);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help texts escape backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

async fn metrics(State(scraper): State<Arc<Scraper>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        scraper.render().await,
    )
        .into_response()
}

struct ExporterHealth {
    redis: Redis,
    topics: Option<Vec<Topic>>,
}

impl HealthCheck for ExporterHealth {
    fn not_ready_reasons(&self) -> Vec<String> {
        // Ready even when Redis is down: a scrape then reports
        // `holdfast_redis_up 0`, which is the point.
        Vec::new()
    }

    fn detail(&self) -> serde_json::Value {
        let degraded = self.redis.state() != ConnState::Ready;
        json!({
            "role": "exporter",
            "redis": self.redis.health(),
            "degraded": degraded.then_some("redis is not ready: scrapes report holdfast_redis_up 0"),
            "topics": match &self.topics {
                Some(topics) => json!(topics.iter().map(Topic::as_str).collect::<Vec<_>>()),
                None => json!("discovered"),
            },
        })
    }
}

/// A built exporter: listener bound, Redis supervisor started.
pub struct Exporter {
    listener: TcpListener,
    redis: Redis,
    scraper: Arc<Scraper>,
    health: Health,
    stack: StackConfig,
    background: CancellationToken,
}

impl Exporter {
    /// Binds the listener (port 0 allowed) and starts connecting to Redis.
    pub async fn build(settings: ExporterSettings) -> std::io::Result<Self> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let listener = TcpListener::bind(settings.listen).await?;
        // Stops the Redis supervisor once serving has ended.
        let background = CancellationToken::new();
        let redis =
            Redis::start(settings.redis, background.clone()).map_err(std::io::Error::other)?;
        let scraper = Arc::new(Scraper::new(
            redis.clone(),
            settings.keys,
            settings.topics.clone(),
            settings.partitions,
        ));
        let health: Health = Arc::new(ExporterHealth {
            redis: redis.clone(),
            topics: settings.topics,
        });
        Ok(Self {
            listener,
            redis,
            scraper,
            health,
            stack: settings.stack,
            background,
        })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The Redis handle.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// `/metrics` and `/health*` behind the shared middleware stack.
    pub fn router(&self) -> Router {
        let metrics = Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.scraper.clone());
        stack(
            health_routes(self.health.clone()).merge(metrics),
            &self.stack,
        )
    }

    /// Serves until `shutdown` is cancelled, lets scrapes in progress finish,
    /// then stops the Redis supervisor.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let router = self.router();
        let result = serve(self.listener, router, async move {
            shutdown.cancelled().await;
            tracing::info!("exporter shutting down");
        })
        .await;
        self.background.cancel();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain"), "plain");
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn every_exporter_metric_has_help_text() {
        for (name, help) in names::EXPORTER {
            assert!(name.starts_with("holdfast_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help text");
        }
    }

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
                out.text.lines().any(|l| l == line),
                "{line} in\n{}",
                out.text
            );
        }
    }

    #[test]
    fn a_replica_reports_its_link_and_last_contact() {
        let text = "role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\n";
        let mut out = Exposition::default();
        render_info(&mut out, &Info::parse(text));
        assert!(
            out.text
                .contains("holdfast_redis_role{role=\"replica\"} 1\n")
        );
        assert!(out.text.contains("holdfast_redis_master_link_up 0\n"));
        assert!(!out.text.contains("holdfast_redis_master_last_io_seconds "));
    }

    #[test]
    fn odd_replies_give_no_figures_rather_than_a_panic() {
        assert!(partition_figures(&[Value::Nil, Value::Nil, Value::Nil, Value::Nil], 0).is_none());
        assert!(partition_figures(&[], 0).is_none());
        let figures =
            partition_figures(&[Value::Int(4), Value::Nil, Value::Nil, Value::Nil], 0).unwrap();
        assert_eq!(
            (figures.length, figures.lag, figures.dead_letters),
            (4, 4, None)
        );
        assert_eq!(scan_page(&Value::Int(1)), None);
    }
}
