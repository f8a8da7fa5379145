//! Names of the metrics this crate emits, re-exported from
//! [`holdfast_core::metric_names`] (where their help texts are listed).
//!
//! The Redis breaker in front of every cache command reports itself as
//! `holdfast_redis_breaker_state`; the fallback rate is the share of
//! `holdfast_cache_reads_total` with `outcome="bypass"`.

pub use holdfast_core::metric_names::{
    CACHE_L1_INVALIDATIONS, CACHE_LOADER_DURATION, CACHE_LOADER_ERRORS, CACHE_NEGATIVE_HITS,
    CACHE_READS, CACHE_SINGLE_FLIGHT_JOINS, CACHE_WARMED,
};
