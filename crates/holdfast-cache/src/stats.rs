//! Counts and state for `/health`.
//!
//! The counts are kept in `meters`, beside the metrics of the same events
//! (see [`crate::metric_names`]), so that `/health` can show them without a
//! metrics recorder installed.

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
