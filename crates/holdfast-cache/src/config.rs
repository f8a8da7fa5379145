//! How long values live, how stale they may get, and how long the cache may
//! make a read wait.

use std::time::Duration;

/// Settings of one [`crate::ReadThrough`] (one per entity, so each entity
/// can have its own TTL).
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// First part of every key, shared with the other holdfast keys (`hf`).
    pub prefix: String,
    /// How long a value is fresh ([`CacheConfig::DEFAULT_TTL`]).
    pub ttl: Duration,
    /// Random spread of `ttl` as a fraction (0.1: ±10%), so keys written
    /// together (a warm-up, a burst of misses) do not expire together and
    /// send one burst of loads to the database.
    pub ttl_jitter: f64,
    /// Optional in-process cache in front of Redis; `None` by default
    /// because it makes invalidation eventually consistent across instances.
    pub l1: Option<L1Config>,
    /// A loader slower than this on a key with a stale copy: serve the stale
    /// copy and let the load finish (and refresh the cache) in the
    /// background. Without a stale copy the read waits for the loader.
    pub soft_timeout: Duration,
    /// How long past freshness a value may still be served when the loader
    /// fails or is slow (the fail-safe window). Redis keeps each value this
    /// much longer than its TTL so the copy survives for that use.
    pub max_stale: Duration,
    /// How long "not found" is cached, so lookups of missing ids do not all
    /// reach the database.
    pub negative_ttl: Duration,
    /// Deadline of each cache command: a slow Redis makes a read slower
    /// than the database alone by at most this much.
    pub redis_timeout: Duration,
}

impl CacheConfig {
    /// How long a value is fresh unless configured otherwise: six minutes,
    /// the TTL of the read-through cache holdfast's api reproduces.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(360);
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            prefix: holdfast_core::Keys::DEFAULT_PREFIX.to_owned(),
            ttl: Self::DEFAULT_TTL,
            ttl_jitter: 0.1,
            l1: None,
            soft_timeout: Duration::from_secs(1),
            max_stale: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            redis_timeout: Duration::from_millis(50),
        }
    }
}

/// The in-process cache in front of Redis.
#[derive(Clone, Copy, Debug)]
pub struct L1Config {
    /// Most entries kept; the least useful are evicted beyond it.
    pub capacity: u64,
    /// How long an entry lives in process. Keep it short: it bounds how
    /// long an instance that missed an invalidation message serves an old
    /// value.
    pub ttl: Duration,
}

impl Default for L1Config {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            ttl: Duration::from_secs(5),
        }
    }
}
