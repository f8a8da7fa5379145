//! Metric handles of one entity, resolved once when the cache is built, so
//! a read records without allocating label strings or searching the
//! registry. Build the cache after installing the metrics recorder (the
//! roles do): handles taken before that record nowhere.

use metrics::{Counter, Histogram};

use crate::metric_names;

pub(crate) struct Meters {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) stale: Counter,
    pub(crate) bypass: Counter,
    pub(crate) error: Counter,
    pub(crate) negative_hits: Counter,
    pub(crate) single_flight_joins: Counter,
    pub(crate) loader_errors: Counter,
    pub(crate) loader_duration: Histogram,
    pub(crate) l1_invalidations: Counter,
    pub(crate) warmed: Counter,
}

impl Meters {
    pub(crate) fn new(entity: &str) -> Self {
        let reads = |outcome: &'static str| metrics::counter!(metric_names::CACHE_READS, "entity" => entity.to_owned(), "outcome" => outcome);
        let entity = || entity.to_owned();
        Self {
            hit: reads("hit"),
            miss: reads("miss"),
            stale: reads("stale"),
            bypass: reads("bypass"),
            error: reads("error"),
            negative_hits: metrics::counter!(metric_names::CACHE_NEGATIVE_HITS, "entity" => entity()),
            single_flight_joins: metrics::counter!(metric_names::CACHE_SINGLE_FLIGHT_JOINS, "entity" => entity()),
            loader_errors: metrics::counter!(metric_names::CACHE_LOADER_ERRORS, "entity" => entity()),
            loader_duration: metrics::histogram!(metric_names::CACHE_LOADER_DURATION, "entity" => entity()),
            l1_invalidations: metrics::counter!(metric_names::CACHE_L1_INVALIDATIONS, "entity" => entity()),
            warmed: metrics::counter!(metric_names::CACHE_WARMED, "entity" => entity()),
        }
    }
}
