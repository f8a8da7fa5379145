//! What one entity's cache counts, each event recorded in one call.
//!
//! Metric handles are resolved once when the cache is built, so a read
//! records without allocating label strings or searching the registry.
//! Build the cache after installing the metrics recorder (the roles do):
//! handles taken before that record nowhere. The events `/health` shows
//! ([`CacheStats`]) also go to an atomic beside their counter, so that
//! `/health` can show them without a recorder installed.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use metrics::{Counter, Histogram};

use crate::error::LoadError;
use crate::metric_names;
use crate::read_through::Source;
use crate::stats::CacheStats;

/// An event counted for `/health` and for the metrics alike.
struct Tally {
    since_start: AtomicU64,
    counter: Counter,
}

impl Tally {
    fn new(counter: Counter) -> Self {
        Self {
            since_start: AtomicU64::new(0),
            counter,
        }
    }

    fn add(&self) {
        self.since_start.fetch_add(1, Ordering::Relaxed);
        self.counter.increment(1);
    }

    fn get(&self) -> u64 {
        self.since_start.load(Ordering::Relaxed)
    }
}

pub(crate) struct Meters {
    hits: Tally,
    misses: Tally,
    stale: Tally,
    bypass: Tally,
    /// Reads that failed for want of a stale copy (metrics only).
    errors: Counter,
    negative_hits: Tally,
    single_flight_joins: Tally,
    loader_errors: Tally,
    loader_duration: Histogram,
    l1_invalidations: Counter,
    warmed: Counter,
}

impl Meters {
    pub(crate) fn new(entity: &str) -> Self {
        let reads = |outcome: &'static str| metrics::counter!(metric_names::CACHE_READS, "entity" => entity.to_owned(), "outcome" => outcome);
        let entity = || entity.to_owned();
        Self {
            hits: Tally::new(reads("hit")),
            misses: Tally::new(reads("miss")),
            stale: Tally::new(reads("stale")),
            bypass: Tally::new(reads("bypass")),
            errors: reads("error"),
            negative_hits: Tally::new(
                metrics::counter!(metric_names::CACHE_NEGATIVE_HITS, "entity" => entity()),
            ),
            single_flight_joins: Tally::new(
                metrics::counter!(metric_names::CACHE_SINGLE_FLIGHT_JOINS, "entity" => entity()),
            ),
            loader_errors: Tally::new(
                metrics::counter!(metric_names::CACHE_LOADER_ERRORS, "entity" => entity()),
            ),
            loader_duration: metrics::histogram!(metric_names::CACHE_LOADER_DURATION, "entity" => entity()),
            l1_invalidations: metrics::counter!(metric_names::CACHE_L1_INVALIDATIONS, "entity" => entity()),
            warmed: metrics::counter!(metric_names::CACHE_WARMED, "entity" => entity()),
        }
    }

    /// An answer from `source` (a bypass, whatever its source, when Redis
    /// was not usable); `found: false` is a cached "not found".
    pub(crate) fn answered(&self, source: Source, bypass: bool, found: bool) {
        match (source, bypass) {
            (_, true) => self.bypass.add(),
            (Source::Cache, false) => {
                self.hits.add();
                if !found {
                    self.negative_hits.add();
                }
            }
            (Source::Db, false) => self.misses.add(),
            (Source::Stale, false) => self.stale.add(),
        }
    }

    /// A read that failed: the loader failed and no stale copy was left.
    pub(crate) fn read_failed(&self) {
        self.errors.increment(1);
    }

    /// A read that waited for a load already under way.
    pub(crate) fn joined_flight(&self) {
        self.single_flight_joins.add();
    }

    /// An L1 entry dropped on another instance's invalidation.
    pub(crate) fn l1_invalidated(&self) {
        self.l1_invalidations.increment(1);
    }

    /// Keys a warm-up wrote.
    pub(crate) fn warmed(&self, keys: u64) {
        self.warmed.increment(keys);
    }

    /// Runs one loader call, recording how long it took and whether it
    /// failed.
    pub(crate) async fn time_load<T>(
        &self,
        load: impl Future<Output = Result<T, LoadError>>,
    ) -> Result<T, LoadError> {
        let started = Instant::now();
        let loaded = load.await;
        self.loader_duration.record(started.elapsed().as_secs_f64());
        if loaded.is_err() {
            self.loader_errors.add();
        }
        loaded
    }

    /// Counts since the cache was built, for `/health`.
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            stale: self.stale.get(),
            bypass: self.bypass.get(),
            loader_errors: self.loader_errors.get(),
            negative_hits: self.negative_hits.get(),
            single_flight_joins: self.single_flight_joins.get(),
        }
    }
}
