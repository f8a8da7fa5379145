//! The sink registry: a `metrics` recorder whose values can be snapshotted.
//!
//! [`SinkRegistry`] keeps, per series, only what the Redis sink needs to
//! send deltas: a counter is one `AtomicU64`, a gauge is the bits of an
//! `f64` in an `AtomicU64`, and a histogram is a [`FixedHistogram`]: one
//! atomic count per fixed bucket and a sum (striped so that threads seldom
//! contend), never raw samples, so memory per series is constant and
//! recording is two atomic operations.
//!
//! Buckets are fixed per name: `*_seconds` histograms use
//! [`metric_names::LATENCY_BUCKETS`], every other histogram uses
//! [`DEFAULT_BUCKETS`] (the Prometheus client default).
//!
//! The registry is a cheap cloneable handle (`Arc` inside). The process
//! installs one as the global recorder (see [`crate::metrics_handle`]); it
//! feeds both the admin `/metrics` ([`crate::render`]) and the Redis sink;
//! tests create several independent ones and record into them with
//! `metrics::with_local_recorder`, as if each were its own process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use holdfast_core::metric_names;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};

/// Buckets of histograms whose name does not end in `_seconds` (the
/// Prometheus client's default buckets).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The fixed bucket bounds used for a histogram of this name.
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        metric_names::LATENCY_BUCKETS
    } else {
        DEFAULT_BUCKETS
    }
}

/// Stripes of a [`FixedHistogram`]: threads record into different stripes
/// (round-robin by thread), so concurrent records rarely touch the same
/// cache line.
const STRIPES: usize = 8;
/// Unused slots after each stripe (128 bytes), so two stripes never share a
/// cache line (nor an adjacent-line prefetch pair).
const STRIPE_GAP: usize = 16;

/// The stripe the current thread records into.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.try_with(|index| *index).unwrap_or(0)
}

/// A histogram with fixed buckets: atomic counts per bucket (the last one
/// is `+Inf`) and a sum, striped over [`STRIPES`] cache-line-separated
/// copies that [`snapshot`](Self::snapshot) adds up. The count is the sum
/// of the buckets.
#[derive(Debug)]
pub struct FixedHistogram {
    bounds: &'static [f64],
    /// Slots of one stripe, gap included.
    stride: usize,
    /// Per stripe: the sum (`f64` bits, updated with a compare-and-swap
    /// loop), then one non-cumulative count per bucket: slot `1 + i` counts
    /// values in `(bounds[i-1], bounds[i]]`, the last one values above every
    /// bound.
    slots: Box<[AtomicU64]>,
}

impl FixedHistogram {
    /// An empty histogram over `bounds` (sorted ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        let stride = (bounds.len() + 2 + STRIPE_GAP).next_multiple_of(8);
        // `0.0` has every bit clear: sums and counts both start at 0.
        let slots = (0..STRIPES * stride).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds,
            stride,
            slots,
        }
    }

    /// Records one observation. NaN is ignored (it has no bucket); an
    /// infinite value is counted in its bucket but left out of the sum, so
    /// the sum stays a number Redis accepts.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let base = stripe_index() * self.stride;
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.slots[base + 1 + index].fetch_add(1, Ordering::Relaxed);
        if value.is_finite() && value != 0.0 {
            let sum = &self.slots[base];
            let mut current = sum.load(Ordering::Relaxed);
            loop {
                let next = (f64::from_bits(current) + value).to_bits();
                match sum.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => break,
                    Err(actual) => current = actual,
                }
            }
        }
    }

    /// The current values, added up over the stripes.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = vec![0u64; self.bounds.len() + 1];
        let mut sum = 0.0;
        for stripe in self.slots.chunks_exact(self.stride) {
            sum += f64::from_bits(stripe[0].load(Ordering::Relaxed));
            for (total, slot) in buckets.iter_mut().zip(&stripe[1..]) {
                *total += slot.load(Ordering::Relaxed);
            }
        }
        HistogramSnapshot {
            bounds: self.bounds,
            count: buckets.iter().sum(),
            buckets,
            sum,
        }
    }
}

impl HistogramFn for FixedHistogram {
    fn record(&self, value: f64) {
        self.observe(value);
    }
}

/// What a [`FixedHistogram`] held at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets.
    pub bounds: &'static [f64],
    /// Non-cumulative counts, one per bound plus a last one for `+Inf`.
    pub buckets: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the finite observations.
    pub sum: f64,
}

/// Storage of the sink registry: plain atomics and fixed histograms.
#[derive(Debug)]
pub struct SinkStorage;

impl Storage<Key> for SinkStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<FixedHistogram>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0f64.to_bits()))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        Arc::new(FixedHistogram::new(buckets_for(key.name())))
    }
}

struct Inner {
    registry: Registry<Key, SinkStorage>,
    /// Help texts by metric name; written by `describe_*`, read by snapshots.
    help: RwLock<BTreeMap<String, String>>,
}

/// A recorder whose values the Redis sink snapshots; cheap to clone.
#[derive(Clone)]
pub struct SinkRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRegistry").finish_non_exhaustive()
    }
}

impl Default for SinkRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl SinkRegistry {
    /// An empty registry, not installed anywhere.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Registry::new(SinkStorage),
                help: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Records a help text for `name` (what `describe_*` does).
    pub fn describe(&self, name: &str, help: &str) {
        let mut map = self.inner.help.write().unwrap_or_else(|e| e.into_inner());
        if map.get(name).map(String::as_str) != Some(help) {
            map.insert(name.to_owned(), help.to_owned());
        }
    }

    /// The current value of every series and every help text.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let mut snapshot = RegistrySnapshot::default();
        let registry = &self.inner.registry;
        registry.visit_counters(|key, counter| {
            snapshot
                .counters
                .push((key.clone(), counter.load(Ordering::Relaxed)));
        });
        registry.visit_gauges(|key, gauge| {
            snapshot
                .gauges
                .push((key.clone(), f64::from_bits(gauge.load(Ordering::Relaxed))));
        });
        registry.visit_histograms(|key, histogram| {
            snapshot
                .histograms
                .push((key.clone(), histogram.snapshot()));
        });
        snapshot.help = self
            .inner
            .help
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        snapshot
    }
}

/// Every series of a [`SinkRegistry`] at one moment.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    /// Counter totals since start.
    pub counters: Vec<(Key, u64)>,
    /// Current gauge values.
    pub gauges: Vec<(Key, f64)>,
    /// Histogram totals since start.
    pub histograms: Vec<(Key, HistogramSnapshot)>,
    /// `(name, help)` of every described metric.
    pub help: Vec<(String, String)>,
}

impl Recorder for SinkRegistry {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key.as_str(), &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.inner
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.inner
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.inner
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let h = FixedHistogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 1.0, 2.0, f64::NAN, f64::INFINITY] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![2, 2, 2]);
        assert_eq!(s.count, 6);
        assert!((s.sum - 3.65).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn records_from_many_threads_add_up_over_the_stripes() {
        let h = FixedHistogram::new(&[0.1, 1.0]);
        std::thread::scope(|s| {
            for _ in 0..2 * STRIPES + 1 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        h.observe(0.5);
                        h.observe(5.0);
                    }
                });
            }
        });
        let s = h.snapshot();
        let n = (2 * STRIPES + 1) as u64 * 1000;
        assert_eq!(s.buckets, vec![0, n, n]);
        assert_eq!(s.count, 2 * n);
        assert!((s.sum - 5.5 * n as f64).abs() < 1e-6, "{}", s.sum);
    }

    #[test]
    fn a_local_registry_sees_only_what_was_recorded_into_it() {
        let a = SinkRegistry::new();
        let b = SinkRegistry::new();
        metrics::with_local_recorder(&a, || {
            metrics::counter!("x_total", "k" => "v").increment(2);
            metrics::gauge!("g").set(1.5);
            metrics::histogram!("d_seconds").record(0.002);
            metrics::describe_counter!("x_total", "Help.");
        });
        let snap = a.snapshot();
        assert_eq!(snap.counters.len(), 1);
        assert_eq!(snap.counters[0].1, 2);
        assert_eq!(snap.gauges[0].1, 1.5);
        assert_eq!(snap.histograms[0].1.count, 1);
        assert_eq!(
            snap.histograms[0].1.bounds.len(),
            metric_names::LATENCY_BUCKETS.len()
        );
        assert_eq!(snap.help, vec![("x_total".to_owned(), "Help.".to_owned())]);
        assert!(b.snapshot().counters.is_empty());
    }
}
