//! Looking at and repairing topics: backlog figures and dead letters.
//!
//! Used by the ingress (backlog limits), the worker (readiness) and the
//! `holdfast dead-letters` commands.

use std::time::Duration;

use holdfast_core::{Deadline, Keys, Topic};
use holdfast_redis::{Redis, RedisError};
use redis::Value;
use serde::Serialize;

use crate::scripts;
use crate::value::{self, RawEntry};

/// Figures of one topic, summed over its partitions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TopicStats {
    /// Entries in the request streams (including handled ones not yet trimmed).
    pub length: u64,
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// `lag + pending`: what the workers still owe.
    pub backlog: u64,
    /// Consumers known to the group.
    pub consumers: u64,
    /// Entries in the dead-letter streams.
    pub dead_letters: u64,
    /// Age of the oldest pending entry in milliseconds, if any.
    pub oldest_pending_ms: Option<u64>,
    /// Entries delivered to the group since it was made, over every
    /// partition (`entries-read`); `None` when the server does not say.
    pub delivered: Option<u64>,
}

/// One partition of a topic, with its consumers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartitionStats {
    /// The partition.
    pub partition: u16,
    /// Entries in the request stream.
    pub length: u64,
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// The group's consumers.
    pub consumers: Vec<ConsumerStats>,
}

/// One consumer of a topic's group on one partition.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStats {
    /// Its name (the worker's consumer name).
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last read or claimed.
    pub idle_ms: u64,
}

/// What `XINFO GROUPS` says of the workers' group on one stream.
struct GroupFigures {
    lag: u64,
    pending: u64,
    consumers: u64,
    /// `entries-read`, when the server reports it.
    delivered: Option<u64>,
}

/// A dead letter with every field of its entry, for inspection.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterEntry {
    /// The letter as listed.
    pub letter: DeadLetter,
    /// Every field of the entry, in order, as text (invalid UTF-8 replaced).
    pub fields: Vec<(String, String)>,
}

/// One dead letter, for listing.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// Id in the dead-letter stream (use it to replay).
    pub id: String,
    /// Partition it belongs to.
    pub partition: u16,
    /// Id the entry had in the request stream.
    pub origin_id: Option<String>,
    /// Request id, when readable.
    pub request_id: Option<String>,
    /// Stable reason code (`max_deliveries`, `missing_field`, ...).
    pub code: Option<String>,
    /// Why it was moved, for a person.
    pub reason: Option<String>,
    /// Deliveries before it was moved.
    pub deliveries: Option<u64>,
}

/// Topic inspection and dead-letter handling.
#[derive(Clone, Debug)]
pub struct Admin {
    redis: Redis,
    keys: Keys,
    partitions: u16,
}

fn text(entry: &RawEntry, name: &[u8]) -> Option<String> {
    entry
        .get(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn letter_of(partition: u16, entry: RawEntry) -> DeadLetter {
    DeadLetter {
        partition,
        origin_id: text(&entry, b"origin_id"),
        request_id: text(&entry, b"id"),
        code: text(&entry, b"dead_code"),
        reason: text(&entry, b"dead_reason"),
        deliveries: text(&entry, b"deliveries").and_then(|d| d.parse().ok()),
        id: entry.id,
    }
}

fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

impl Admin {
    /// Inspects topics of `partitions` partitions under `keys`.
    pub fn new(redis: Redis, keys: Keys, partitions: u16) -> Self {
        Self {
            redis,
            keys,
            partitions: partitions.max(1),
        }
    }

    /// The lengths of a partition's request and dead-letter streams.
    async fn lengths(&self, topic: &Topic, partition: u16) -> Result<(u64, u64), RedisError> {
        let stream = self.keys.request_stream(topic, partition);
        let dead = self.keys.dead_letter_stream(topic, partition);
        self.redis
            .pipe(
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&stream)
                    .cmd("XLEN")
                    .arg(&dead),
                self.redis.config().command_timeout,
            )
            .await
    }

    /// The workers' group on `stream` (of `length` entries): lag, pending
    /// and consumers; `None` when the stream or the group does not exist
    /// yet (then every entry is waiting).
    async fn group(&self, stream: &str, length: u64) -> Result<Option<GroupFigures>, RedisError> {
        let groups: Value = match self
            .redis
            .cmd(redis::cmd("XINFO").arg("GROUPS").arg(stream))
            .await
        {
            Ok(v) => v,
            Err(RedisError::Server(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let group = match &groups {
            Value::Array(items) => items.iter().find(|g| {
                matches!(value::field(g, "name"), Some(Value::BulkString(n)) if n == Keys::GROUP.as_bytes())
            }),
            _ => None,
        };
        let Some(group) = group else {
            return Ok(None);
        };
        let number = |name| value::field(group, name).and_then(value::int);
        let pending = number("pending").unwrap_or(0).max(0) as u64;
        Ok(Some(GroupFigures {
            pending,
            // `lag` is nil when Redis cannot compute it; the length is then
            // the safe (larger) estimate.
            lag: number("lag").map_or(length.saturating_sub(pending), |l| l.max(0) as u64),
            consumers: number("consumers").unwrap_or(0).max(0) as u64,
            delivered: number("entries-read").map(|n| n.max(0) as u64),
        }))
    }

    /// Length, lag, pending, consumers and dead letters of a topic.
    pub async fn topic_stats(&self, topic: &Topic) -> Result<TopicStats, RedisError> {
        let mut stats = TopicStats {
            delivered: Some(0),
            ..TopicStats::default()
        };
        for partition in 0..self.partitions {
            let (length, dead_len) = self.lengths(topic, partition).await?;
            stats.length += length;
            stats.dead_letters += dead_len;
            if length == 0 {
                continue;
            }
            let stream = self.keys.request_stream(topic, partition);
            let Some(group) = self.group(&stream, length).await? else {
                // No workers yet: everything is waiting.
                stats.lag += length;
                continue;
            };
            stats.pending += group.pending;
            stats.lag += group.lag;
            stats.consumers += group.consumers;
            stats.delivered = stats.delivered.zip(group.delivered).map(|(a, b)| a + b);
            if group.pending > 0 {
                let summary: Value = self
                    .redis
                    .cmd(redis::cmd("XPENDING").arg(&stream).arg(Keys::GROUP))
                    .await?;
                if let Value::Array(parts) = summary
                    && let Some(Value::BulkString(min)) = parts.get(1)
                    && let Some(ms) = id_ms(&String::from_utf8_lossy(min))
                {
                    let age = Deadline::now_unix_ms().saturating_sub(ms);
                    stats.oldest_pending_ms =
                        Some(stats.oldest_pending_ms.map_or(age, |a| a.max(age)));
                }
            }
        }
        stats.backlog = stats.lag + stats.pending;
        Ok(stats)
    }

    /// Each partition's figures and consumers.
    pub async fn partition_stats(&self, topic: &Topic) -> Result<Vec<PartitionStats>, RedisError> {
        let mut out = Vec::with_capacity(usize::from(self.partitions));
        for partition in 0..self.partitions {
            let (length, dead_letters) = self.lengths(topic, partition).await?;
            let stream = self.keys.request_stream(topic, partition);
            let mut stats = PartitionStats {
                partition,
                length,
                dead_letters,
                lag: length,
                ..PartitionStats::default()
            };
            if let Some(group) = self.group(&stream, length).await? {
                stats.pending = group.pending;
                stats.lag = group.lag;
                stats.consumers = self.consumers(&stream).await?;
            }
            out.push(stats);
        }
        Ok(out)
    }

    /// The group's consumers on `stream`.
    async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerStats>, RedisError> {
        let consumers: Value = self
            .redis
            .cmd(
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(stream)
                    .arg(Keys::GROUP),
            )
            .await?;
        let Value::Array(items) = consumers else {
            return Ok(Vec::new());
        };
        Ok(items
            .iter()
            .map(|c| {
                let number = |name| {
                    value::field(c, name)
                        .and_then(value::int)
                        .unwrap_or(0)
                        .max(0) as u64
                };
                ConsumerStats {
                    name: match value::field(c, "name") {
                        Some(Value::BulkString(n)) => String::from_utf8_lossy(n).into_owned(),
                        Some(Value::SimpleString(n)) => n.clone(),
                        _ => String::new(),
                    },
                    pending: number("pending"),
                    idle_ms: number("idle"),
                }
            })
            .collect())
    }

    /// The dead letter `id` with all its fields, if a partition holds it.
    pub async fn dead_letter(
        &self,
        topic: &Topic,
        id: &str,
    ) -> Result<Option<DeadLetterEntry>, RedisError> {
        for partition in 0..self.partitions {
            let dead = self.keys.dead_letter_stream(topic, partition);
            let v: Value = self
                .redis
                .cmd(redis::cmd("XRANGE").arg(&dead).arg(id).arg(id))
                .await?;
            if let Some(entry) = value::entries(v).into_iter().next() {
                let fields = entry
                    .pairs()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                return Ok(Some(DeadLetterEntry {
                    letter: letter_of(partition, entry),
                    fields,
                }));
            }
        }
        Ok(None)
    }

    /// Up to `count` dead letters of each partition, oldest first.
    pub async fn dead_letters(
        &self,
        topic: &Topic,
        count: usize,
    ) -> Result<Vec<DeadLetter>, RedisError> {
        let mut out = Vec::new();
        for partition in 0..self.partitions {
            let dead = self.keys.dead_letter_stream(topic, partition);
            let v: Value = self
                .redis
                .cmd(
                    redis::cmd("XRANGE")
                        .arg(&dead)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(count),
                )
                .await?;
            for entry in value::entries(v) {
                out.push(letter_of(partition, entry));
            }
        }
        Ok(out)
    }

    /// Puts dead letters back on their request streams with a deadline
    /// `deadline` from now; `ids` empty replays all. Returns how many.
    pub async fn replay(
        &self,
        topic: &Topic,
        ids: &[String],
        deadline: Duration,
    ) -> Result<usize, RedisError> {
        // Named letters are looked up one by one; only "all" lists them.
        let letters = if ids.is_empty() {
            self.dead_letters(topic, usize::MAX >> 1).await?
        } else {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(entry) = self.dead_letter(topic, id).await? {
                    found.push(entry.letter);
                }
            }
            found
        };
        let new_deadline = Deadline::after(deadline).unix_ms();
        let mut replayed = 0;
        for letter in letters {
            let stream = self.keys.request_stream(topic, letter.partition);
            let dead = self.keys.dead_letter_stream(topic, letter.partition);
            let mut inv = scripts::REPLAY.key(&stream);
            inv.key(&dead).arg(&letter.id).arg(new_deadline);
            let id: Option<String> = self
                .redis
                .script(&inv, self.redis.config().command_timeout)
                .await?;
            if id.is_some() {
                replayed += 1;
            }
        }
        Ok(replayed)
    }

    /// Deletes every dead letter of a topic. Returns how many were removed.
    pub async fn purge(&self, topic: &Topic) -> Result<u64, RedisError> {
        let mut removed = 0;
        for partition in 0..self.partitions {
            let dead = self.keys.dead_letter_stream(topic, partition);
            let (len, _): (u64, u64) = self
                .redis
                .pipe(
                    redis::pipe().cmd("XLEN").arg(&dead).cmd("DEL").arg(&dead),
                    self.redis.config().command_timeout,
                )
                .await?;
            removed += len;
        }
        Ok(removed)
    }
}
