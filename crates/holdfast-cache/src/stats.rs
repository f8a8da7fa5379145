//! Counts and state for `/health`.
//!
//! The same events also go to the `metrics` crate (see
//! [`crate::metric_names`]); these atomics exist so that `/health` can show
//! them without a metrics recorder installed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counts since this [`crate::ReadThrough`] was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Answers from a fresh copy (L1 or Redis), including negative hits.
    pub hits: u64,
    /// Answers from the loader with Redis usable.
    pub misses: u64,
    /// Stale copies served because the loader failed or was slow.
    pub stale: u64,
    /// Answers from the loader because Redis was not usable (fallbacks).
    pub bypass: u64,
    /// Loader calls that failed (one per load, however many reads waited).
    pub loader_errors: u64,
    /// Hits on a cached "not found".
    pub negative_hits: u64,
    /// Reads that waited for a load already under way instead of calling
    /// the loader again.
    pub single_flight_joins: u64,
}

/// Whether the cache is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheState {
    /// Redis is connected: reads go through the cache.
    Ready,
    /// Redis is enabled but not connected: reads go to the loader.
    Degraded,
    /// Redis is switched off by configuration.
    Disabled,
}

impl CacheState {
    /// The form used in JSON: `ready`, `degraded`, `disabled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheState::Ready => "ready",
            CacheState::Degraded => "degraded",
            CacheState::Disabled => "disabled",
        }
    }
}

/// The live counters behind [`CacheStats`], shared by all clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) bypass: AtomicU64,
    pub(crate) loader_errors: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) single_flight_joins: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            bypass: self.bypass.load(Ordering::Relaxed),
            loader_errors: self.loader_errors.load(Ordering::Relaxed),
            negative_hits: self.negative_hits.load(Ordering::Relaxed),
            single_flight_joins: self.single_flight_joins.load(Ordering::Relaxed),
        }
    }
}
