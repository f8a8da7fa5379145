//! Names of the metrics this crate emits.
//!
//! They will move to `holdfast_core::metric_names` (with their help texts
//! in its `ALL` list) when the api role wires the cache in; until then
//! they live here so that this crate does not change core.

/// Counter: reads answered, by `entity` and `outcome`
/// (`hit`, `miss`, `stale`, `bypass`, `error`).
pub const CACHE_READS: &str = "holdfast_cache_reads_total";
/// Counter: hits on a cached "not found", by `entity`.
pub const CACHE_NEGATIVE_HITS: &str = "holdfast_cache_negative_hits_total";
/// Counter: reads that joined a load already under way for the same key.
pub const CACHE_SINGLE_FLIGHT_JOINS: &str = "holdfast_cache_single_flight_joins_total";
/// Counter: loader calls that failed, by `entity`.
pub const CACHE_LOADER_ERRORS: &str = "holdfast_cache_loader_errors_total";
/// Histogram: time one loader call took, in seconds, by `entity`.
pub const CACHE_LOADER_DURATION: &str = "holdfast_cache_loader_duration_seconds";
/// Counter: invalidation messages from other instances applied to L1.
pub const CACHE_L1_INVALIDATIONS: &str = "holdfast_cache_l1_invalidations_total";
