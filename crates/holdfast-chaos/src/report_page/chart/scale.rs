//! The chart's scales: seconds across both panels, answers per second
//! (linear) in the top panel, p99 latency (log10) in the bottom one, and
//! where the ticks of each fall.

use std::collections::BTreeMap;

use super::series::Series;
use super::{PLOT_LEFT, PLOT_RIGHT, Panel};

/// Width of the plot area.
pub(super) const PLOT_WIDTH: f64 = PLOT_RIGHT - PLOT_LEFT;

/// Smallest of 1, 2, 5 × 10^k at least `v` (1 for non-positive or NaN).
pub(crate) fn nice_ceil(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let exp = 10f64.powf(v.log10().floor());
    for f in [1.0, 2.0, 5.0, 10.0] {
        if f * exp >= v * (1.0 - 1e-9) {
            return f * exp;
        }
    }
    10.0 * exp
}

/// Nearest-rank percentile of `sorted` (ascending, non-empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seconds since the start of the run, left to right.
#[derive(Clone, Copy)]
pub(super) struct TimeScale {
    /// The last second shown: the run's length, or the last point's end.
    pub(super) x_max: f64,
}

impl TimeScale {
    pub(super) fn new(duration_s: f64, series: &[Series<'_>]) -> Self {
        let mut x_max = if duration_s.is_finite() && duration_s > 0.0 {
            duration_s
        } else {
            0.0
        };
        for s in series {
            if let Some(p) = s.points.last() {
                x_max = x_max.max(p.second as f64 + 1.0);
            }
        }
        if x_max <= 0.0 {
            x_max = 1.0;
        }
        Self { x_max }
    }

    /// Where second `t` is (clamped to the run).
    pub(super) fn x(&self, t: f64) -> f64 {
        PLOT_LEFT + (t.clamp(0.0, self.x_max) / self.x_max) * PLOT_WIDTH
    }

    /// Seconds with a tick: at most about a dozen, on round steps.
    pub(super) fn ticks(&self) -> Vec<f64> {
        let step = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
        ]
        .into_iter()
        .find(|s| self.x_max / s <= 12.0)
        .unwrap_or_else(|| nice_ceil(self.x_max / 12.0));
        let mut ticks = Vec::new();
        let mut t = 0.0;
        while t <= self.x_max + 1e-9 {
            ticks.push(t);
            t += step;
        }
        ticks
    }
}

/// Answers per second in the top panel: the loads' ok lines and their
/// stacked error bars share it.
pub(super) struct CountScale {
    step: f64,
    y_top: f64,
    panel: Panel,
}

impl CountScale {
    /// Tall enough for the highest ok count and the highest stack of
    /// errors (`errors_at`: per second, each load's errors).
    pub(super) fn new(
        series: &[Series<'_>],
        errors_at: &BTreeMap<u64, Vec<(usize, u64)>>,
        panel: Panel,
    ) -> Self {
        let mut top_max: f64 = 0.0;
        for s in series {
            for p in &s.points {
                top_max = top_max.max(p.ok as f64);
            }
        }
        for v in errors_at.values() {
            top_max = top_max.max(v.iter().map(|(_, e)| *e as f64).sum());
        }
        let step = nice_ceil((top_max / 4.0).max(1.0));
        let y_top = (top_max / step).ceil().max(1.0) * step;
        Self { step, y_top, panel }
    }

    pub(super) fn y(&self, v: f64) -> f64 {
        self.panel.bottom() - (v.clamp(0.0, self.y_top) / self.y_top) * self.panel.height
    }

    /// 0 and every step up to the top.
    pub(super) fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut t = 0.0;
        while t <= self.y_top + 1e-9 {
            ticks.push(t);
            t += self.step;
        }
        ticks
    }
}

/// p99 latency in the bottom panel, on a log scale from the decade below
/// the fastest point to the 99th percentile of the points.
pub(super) struct LatencyScale {
    lo: f64,
    hi: f64,
    panel: Panel,
}

impl LatencyScale {
    pub(super) fn new(series: &[Series<'_>], panel: Panel) -> Self {
        let mut lat: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.requests > 0 && p.p99_ms.is_finite() && p.p99_ms > 0.0)
            .map(|p| p.p99_ms)
            .collect();
        lat.sort_by(f64::total_cmp);
        let (lo, hi) = if lat.is_empty() {
            (1.0, 1000.0)
        } else {
            let lo = 10f64.powf(lat[0].log10().floor());
            let hi = nice_ceil(percentile(&lat, 99.0));
            let hi = if hi <= lo { lo * 10.0 } else { hi };
            (lo, hi)
        };
        Self { lo, hi, panel }
    }

    pub(super) fn y(&self, v: f64) -> f64 {
        let (llo, lhi) = (self.lo.log10(), self.hi.log10());
        self.panel.bottom()
            - ((v.max(self.lo).log10() - llo) / (lhi - llo)).min(1.0) * self.panel.height
    }

    /// Whether `v` is above the top of the axis (drawn on the edge).
    pub(super) fn is_above(&self, v: f64) -> bool {
        v > self.hi * (1.0 + 1e-9)
    }

    /// Every decade, with 2 and 5 between them when there are few, and the
    /// top.
    pub(super) fn ticks(&self) -> Vec<f64> {
        let (lo, hi) = (self.lo, self.hi);
        let mut ticks: Vec<f64> = Vec::new();
        let decades = (hi.log10() - lo.log10()).round().max(1.0) as i32;
        let mut d = lo;
        while d <= hi * (1.0 + 1e-9) {
            for f in [1.0, 2.0, 5.0] {
                let v = d * f;
                if (f == 1.0 || decades <= 2) && v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                    ticks.push(v);
                }
            }
            d *= 10.0;
        }
        if ticks.last().is_none_or(|&v| (v - hi).abs() > hi * 1e-6) {
            ticks.push(hi);
        }
        ticks
    }
}
