//! The per-second timeline, in memory bounded by the run's length in
//! seconds.
//!
//! Each slot keeps a [`SecondAccumulator`] for the second it is in (counts
//! and a coarse histogram) and flushes it into the shared [`Timeline`] when
//! it moves to a later second — about once a second per slot, so the lock
//! here is off the hot path. A slot's *floor* is the earliest second it may
//! still add to; seconds below every slot's floor can no longer change and
//! are reduced to their small [`Second`] record. Open seconds are bounded by
//! the longest request (its timeout), not by the number of requests.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::report::Second;

/// Highest latency recorded, in microseconds (one hour); longer saturates.
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds, 1 µs .. 1 hour.
pub(crate) fn latency_histogram(significant_figures: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_figures)
        .expect("constant histogram bounds are valid")
}

/// Per-second percentiles are coarser than the run's: 2 significant figures
/// (1 %) keep each open second's histogram small.
fn second_histogram() -> Histogram<u64> {
    latency_histogram(2)
}

/// Counts of one second.
struct OpenSecond {
    requests: u64,
    ok: u64,
    hist: Histogram<u64>,
}

/// State shared by the slots; owned by the run, locked by a slot only when
/// it moves to a new second and by the progress bar 4 times a second.
struct Inner {
    open: BTreeMap<u64, OpenSecond>,
    /// Per slot: the earliest second it may still add to (`u64::MAX` once it
    /// has finished).
    floors: Vec<u64>,
    closed: Vec<Second>,
    /// Every latency flushed so far, for the progress bar's p99.
    cumulative: Histogram<u64>,
    /// Histograms of closed seconds, reused for new ones.
    spare: Vec<Histogram<u64>>,
}

/// The run's timeline.
pub(crate) struct Timeline {
    inner: Mutex<Inner>,
}

impl Timeline {
    pub fn new(slots: usize) -> Self {
        Timeline {
            inner: Mutex::new(Inner {
                open: BTreeMap::new(),
                floors: vec![0; slots],
                closed: Vec::new(),
                cumulative: second_histogram(),
                spare: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough counts.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The p99 of everything flushed so far, in milliseconds.
    pub fn p99_so_far_ms(&self) -> f64 {
        let inner = self.lock();
        if inner.cumulative.is_empty() {
            return 0.0;
        }
        inner.cumulative.value_at_quantile(0.99) as f64 / 1000.0
    }

    fn flush(&self, accumulator: &SecondAccumulator, floor: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if accumulator.requests > 0 {
            let open = match inner.open.entry(accumulator.second) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(OpenSecond {
                    requests: 0,
                    ok: 0,
                    hist: inner.spare.pop().unwrap_or_else(second_histogram),
                }),
            };
            open.requests += accumulator.requests;
            open.ok += accumulator.ok;
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = open.hist.add(&accumulator.hist);
            let _ = inner.cumulative.add(&accumulator.hist);
        }
        inner.floors[accumulator.slot] = floor;
        let lowest_floor = inner.floors.iter().copied().min().unwrap_or(u64::MAX);
        while let Some(entry) = inner.open.first_entry() {
            if *entry.key() >= lowest_floor {
                break;
            }
            let (second, open) = entry.remove_entry();
            inner.close(second, open);
        }
    }

    /// Closes every second and returns the records of seconds `0..=last`.
    pub fn finish(&self, last_second: u64) -> Vec<Second> {
        let mut inner = self.lock();
        while let Some((second, open)) = inner.open.pop_first() {
            inner.close(second, open);
        }
        inner.fill_until(last_second + 1);
        std::mem::take(&mut inner.closed)
    }

    #[cfg(test)]
    fn open_seconds(&self) -> usize {
        self.lock().open.len()
    }
}

impl Inner {
    /// Seconds without any completion get an empty record: no gaps.
    fn fill_until(&mut self, end: u64) {
        while (self.closed.len() as u64) < end {
            let second = self.closed.len() as u64;
            self.closed.push(Second {
                second,
                requests: 0,
                ok: 0,
                errors: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
            });
        }
    }

    fn close(&mut self, second: u64, mut open: OpenSecond) {
        self.fill_until(second);
        let ms = |us: u64| us as f64 / 1000.0;
        self.closed.push(Second {
            second,
            requests: open.requests,
            ok: open.ok,
            errors: open.requests - open.ok,
            p50_ms: ms(open.hist.value_at_quantile(0.5)),
            p99_ms: ms(open.hist.value_at_quantile(0.99)),
            max_ms: ms(open.hist.max()),
        });
        open.hist.reset();
        self.spare.push(open.hist);
    }
}

/// One slot's counts for the second it is in. Owned by the slot: recording
/// takes no lock.
pub(crate) struct SecondAccumulator {
    slot: usize,
    second: u64,
    requests: u64,
    ok: u64,
    hist: Histogram<u64>,
}

impl SecondAccumulator {
    pub fn new(slot: usize) -> Self {
        SecondAccumulator {
            slot,
            second: 0,
            requests: 0,
            ok: 0,
            hist: second_histogram(),
        }
    }

    /// The slot will add nothing before `second`: flushes what it holds if
    /// that is an earlier second.
    pub fn advance(&mut self, timeline: &Timeline, second: u64) {
        if second > self.second {
            timeline.flush(self, second);
            self.second = second;
            self.requests = 0;
            self.ok = 0;
            self.hist.reset();
        }
    }

    /// Records one completion in `second`.
    pub fn record(&mut self, timeline: &Timeline, second: u64, latency_us: u64, ok: bool) {
        self.advance(timeline, second);
        self.requests += 1;
        self.ok += u64::from(ok);
        self.hist.saturating_record(latency_us);
    }

    /// The slot is done: flushes and stops holding back any second.
    pub fn finish(&mut self, timeline: &Timeline) {
        timeline.flush(self, u64::MAX);
        self.requests = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_does_not_grow_with_the_number_of_requests() {
        let timeline = Timeline::new(2);
        let mut slots = [SecondAccumulator::new(0), SecondAccumulator::new(1)];
        // 20 seconds of 100,000 requests each, spread over two slots.
        for second in 0..20 {
            for request in 0..100_000u64 {
                let slot = &mut slots[(request % 2) as usize];
                slot.record(&timeline, second, 100 + request % 5_000, request % 10 != 0);
            }
            assert!(timeline.open_seconds() <= 2, "second {second}");
        }
        assert!(timeline.lock().spare.len() <= 2);
        for slot in &mut slots {
            slot.finish(&timeline);
        }
        let records = timeline.finish(19);
        assert_eq!(records.len(), 20);
        assert!(
            records
                .iter()
                .all(|s| s.requests == 100_000 && s.ok == 90_000)
        );
    }

    #[test]
    fn a_slot_stuck_in_a_request_holds_back_only_the_seconds_since() {
        let timeline = Timeline::new(2);
        let mut stuck = SecondAccumulator::new(0);
        let mut busy = SecondAccumulator::new(1);
        stuck.record(&timeline, 1, 10, true);
        for second in 0..6 {
            busy.record(&timeline, second, 10, true);
        }
        // Second 0 is final (both slots are past it); 1.. wait for `stuck`.
        assert_eq!(timeline.lock().closed.len(), 1);
        stuck.record(&timeline, 6, 5_000_000, false);
        assert_eq!(timeline.lock().closed.len(), 5);
        stuck.finish(&timeline);
        busy.finish(&timeline);
        let records = timeline.finish(7);
        assert_eq!(records.len(), 8);
        assert_eq!(records.iter().map(|s| s.requests).sum::<u64>(), 8);
        assert_eq!(records[1].requests, 2);
        assert_eq!(records[6].errors, 1);
        assert_eq!(records[7].requests, 0);
    }
}
