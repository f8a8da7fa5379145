//! One scrape: `INFO` and topic discovery in a first pipeline, then the
//! topic figures and the flushed aggregates side by side, written through
//! the one Prometheus text writer.

use std::time::Instant;

use holdfast_core::{Deadline, Keys, Topic, metric_names as names};
use holdfast_redis::redis::{self, Value};
use holdfast_redis::{Redis, RedisError};
use holdfast_streams::value;
use holdfast_telemetry::exposition::Exposition;
use tokio::sync::Semaphore;

use super::families::{gauge, labelled_gauges};
use super::info::{Info, render_info};
use super::topics::{
    Partition, PartitionFigures, partition_figures, raw_stream_key, render_topics,
};

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

/// Computes one exposition from Redis.
pub struct Scraper {
    redis: Redis,
    keys: Keys,
    topics: Option<Vec<Topic>>,
    partitions: u16,
    /// See [`MAX_CONCURRENT_SCRAPES`]; never closed.
    scrapes: Semaphore,
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
        let pattern = self.keys.request_stream_pattern();
        let mut out = Exposition::default();

        // INFO answers whether Redis is there at all (on a cluster, one
        // primary's INFO).
        let info = match self.redis.info(None).await {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(error = %err, "redis did not answer the scrape");
                gauge(&mut out, names::EXPORTER_REDIS_UP, 0.0);
                return out.into_text();
            }
        };

        let (aggregates, topics) = tokio::join!(
            scrape_aggregates(&self.redis, self.keys.prefix()),
            self.topic_figures(&pattern)
        );

        let mut success = Vec::new();
        let aggregates = part(
            &mut success,
            "aggregates",
            aggregates,
            "the flushed metric aggregates",
        );
        if let Some(text) = aggregates {
            out.push_text(&text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push_text("\n");
            }
        }
        gauge(&mut out, names::EXPORTER_REDIS_UP, 1.0);
        render_info(&mut out, &Info::parse(&info));
        if let Some(topics) = part(&mut success, "topics", topics, "the topic streams") {
            render_topics(&mut out, &topics);
        }
        let success = success.into_iter().map(Some);
        labelled_gauges(&mut out, names::EXPORTER_SCRAPE_SUCCESS, "part", success);
        let duration = started.elapsed().as_secs_f64();
        gauge(&mut out, names::EXPORTER_SCRAPE_DURATION, duration);
        out.into_text()
    }

    /// The partitions to report, sorted: named ones, or those discovered by
    /// `SCAN` (on every primary of a cluster).
    async fn partitions(&self, pattern: &str) -> Result<Vec<Partition>, RedisError> {
        let mut found: Vec<(String, u16)> = Vec::new();
        if let Some(topics) = &self.topics {
            for topic in topics {
                for partition in 0..self.partitions {
                    found.push((topic.as_str().to_owned(), partition));
                }
            }
        } else {
            let keys = self
                .redis
                .scan(
                    pattern,
                    SCAN_COUNT,
                    MAX_PARTITIONS + 1,
                    self.redis.config().command_timeout,
                )
                .await?;
            for key in keys {
                if let Some((topic, partition)) = self.keys.parse_request_stream(&key) {
                    found.push((topic.to_owned(), partition));
                }
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
        pattern: &str,
    ) -> Result<Vec<(Partition, PartitionFigures)>, RedisError> {
        let partitions = self.partitions(pattern).await?;
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

/// What one part of a scrape read, if it could be read; `success` notes
/// whether it was (1) or not (0), and a failure is logged.
fn part<T>(
    success: &mut Vec<(&'static str, f64)>,
    part: &'static str,
    read: Result<T, RedisError>,
    what: &str,
) -> Option<T> {
    match read {
        Ok(value) => {
            success.push((part, 1.0));
            Some(value)
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not read {what}");
            success.push((part, 0.0));
            None
        }
    }
}

/// The millisecond part of a stream entry id.
pub(super) fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

pub(super) fn non_negative(v: &Value) -> Option<u64> {
    value::int(v).and_then(|i| u64::try_from(i).ok())
}

pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}
