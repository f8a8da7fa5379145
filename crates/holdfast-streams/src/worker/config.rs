//! The settings of one worker and their defaults.

use std::time::Duration;

use holdfast_core::{Keys, Topic};

/// Settings of one worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Key layout.
    pub keys: Keys,
    /// The topic served.
    pub topic: Topic,
    /// Partitions of the topic (must match the callers').
    pub partitions: u16,
    /// Consumer name in the group; unique per process.
    pub consumer: String,
    /// Requests handled at once ("terminals").
    pub concurrency: usize,
    /// An entry idle this long in another consumer's hands is claimed.
    pub claim_timeout: Duration,
    /// Deliveries after which an entry becomes a dead letter.
    pub max_deliveries: u32,
    /// After a failed delivery, how long before the entry is tried again
    /// (at most `claim_timeout`).
    pub retry_delay: Duration,
    /// How long one read blocks; also bounds how long shutdown waits for it.
    pub block: Duration,
    /// TTL set on reply streams written to (a dead caller's stream expires).
    pub reply_ttl: Duration,
    /// How long a job's record is kept after it finishes.
    pub job_ttl: Duration,
    /// How often the request stream is trimmed and its backlog read.
    pub trim_interval: Duration,
    /// Approximate cap of the dead-letter stream.
    pub dead_letter_maxlen: u64,
    /// How long shutdown waits for handlers in progress.
    pub drain_timeout: Duration,
    /// With a backlog and nothing consumed for this long, the worker
    /// reports itself not ready.
    pub stall_after: Duration,
}

impl WorkerConfig {
    /// Requests handled at once by default.
    pub const DEFAULT_CONCURRENCY: usize = 16;
    /// How long an entry stays with a consumer before another claims it.
    pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(5);
    /// Deliveries before an entry becomes a dead letter.
    pub const DEFAULT_MAX_DELIVERIES: u32 = 3;
    /// How long shutdown waits for handlers in progress.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// With a backlog and nothing consumed this long, not ready.
    pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);

    /// Defaults for `topic`, with a consumer name unique to this process.
    pub fn new(keys: Keys, topic: Topic) -> Self {
        Self {
            keys,
            topic,
            partitions: Topic::DEFAULT_PARTITIONS,
            consumer: default_consumer_name(),
            concurrency: Self::DEFAULT_CONCURRENCY,
            claim_timeout: Self::DEFAULT_CLAIM_TIMEOUT,
            max_deliveries: Self::DEFAULT_MAX_DELIVERIES,
            retry_delay: Duration::from_millis(500),
            block: Duration::from_secs(1),
            reply_ttl: Duration::from_secs(60),
            job_ttl: Duration::from_secs(24 * 3600),
            trim_interval: Duration::from_secs(5),
            dead_letter_maxlen: 100_000,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            stall_after: Self::DEFAULT_STALL_AFTER,
        }
    }
}

/// `host-pid-random`: readable in `XINFO CONSUMERS`, unique per process.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}
