//! The loads' data: throughput lines and stacked error bars in the top
//! panel, p99 latency lines in the bottom one (with a triangle on the top
//! edge for a point above the axis), and per-second hover columns that
//! show every load's figures of that second as a tooltip.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::scale::{CountScale, LatencyScale, PLOT_WIDTH, TimeScale};
use super::{error_colour, load_colour};
use crate::report::{RunReport, SecondPoint};
use crate::report_page::text::{Px, ms_label};

/// Seconds past which the per-second hover columns are left out (size).
const MAX_HOVER_SECONDS: f64 = 1200.0;

/// One load's timeline, sorted by second, duplicates dropped.
pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) points: Vec<&'a SecondPoint>,
}

/// Every load's timeline, in the report's order.
pub(super) fn of(report: &RunReport) -> Vec<Series<'_>> {
    report
        .loads
        .iter()
        .map(|l| {
            let mut points: Vec<_> = l.timeline.iter().collect();
            points.sort_by_key(|p| p.second);
            points.dedup_by_key(|p| p.second);
            Series {
                name: &l.name,
                points,
            }
        })
        .collect()
}

/// Per second with errors: each load's errors, in the loads' order.
pub(super) fn errors_by_second(series: &[Series<'_>]) -> BTreeMap<u64, Vec<(usize, u64)>> {
    let mut errors_at: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        for p in &s.points {
            if p.errors > 0 {
                errors_at.entry(p.second).or_default().push((i, p.errors));
            }
        }
    }
    errors_at
}

/// One piece of a stacked error bar.
pub(super) struct Bar {
    pub(super) x: Px,
    pub(super) y: Px,
    pub(super) width: Px,
    pub(super) height: Px,
    pub(super) colour: &'static str,
}

/// The error bars: one slot per second, stacked by load.
pub(super) fn error_bars(
    errors_at: &BTreeMap<u64, Vec<(usize, u64)>>,
    time: &TimeScale,
    counts: &CountScale,
) -> Vec<Bar> {
    let slot = PLOT_WIDTH / time.x_max;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let mut bars = Vec::new();
    for (second, errs) in errors_at {
        let s = *second as f64;
        if s >= time.x_max {
            continue;
        }
        let x0 = time.x(s) + gap / 2.0;
        let w = (time.x(s + 1.0) - time.x(s) - gap).max(0.5);
        let mut acc = 0.0;
        for (i, e) in errs {
            let y1 = counts.y(acc);
            acc += *e as f64;
            let y0 = counts.y(acc);
            bars.push(Bar {
                x: Px(x0),
                y: Px(y0),
                width: Px(w),
                height: Px((y1 - y0).max(0.0)),
                colour: error_colour(*i),
            });
        }
    }
    bars
}

/// A polyline with gaps: its path (empty when every run of points is a
/// single one) and its isolated points, drawn as dots.
pub(super) struct Line {
    pub(super) d: String,
    pub(super) dots: Vec<(Px, Px)>,
    pub(super) colour: &'static str,
    pub(super) width: f64,
}

impl Line {
    /// From `points`: x and y, or no y for a gap.
    fn new(points: &[(f64, Option<f64>)], colour: &'static str, width: f64) -> Line {
        let mut line = Line {
            d: String::new(),
            dots: Vec::new(),
            colour,
            width,
        };
        let mut run: Vec<(f64, f64)> = Vec::new();
        for &(x, y) in points {
            match y {
                Some(y) if y.is_finite() && x.is_finite() => run.push((x, y)),
                _ => line.end_run(&mut run),
            }
        }
        line.end_run(&mut run);
        line
    }

    fn end_run(&mut self, run: &mut Vec<(f64, f64)>) {
        match run.len() {
            0 => {}
            1 => self.dots.push((Px(run[0].0), Px(run[0].1))),
            _ => {
                for (i, (x, y)) in run.iter().enumerate() {
                    let _ = write!(
                        self.d,
                        "{}{} {}",
                        if i == 0 { "M" } else { "L" },
                        Px(*x),
                        Px(*y)
                    );
                }
            }
        }
        run.clear();
    }
}

/// A p99 point above the latency axis, marked on its top edge.
pub(super) struct Clipped {
    pub(super) x: Px,
    pub(super) y: Px,
    pub(super) colour: &'static str,
    pub(super) tip: String,
}

/// Each load's ok line (top) then latency line (bottom), and the latency
/// points above the axis.
pub(super) fn lines(
    series: &[Series<'_>],
    time: &TimeScale,
    counts: &CountScale,
    latency: &LatencyScale,
    latency_top: f64,
) -> (Vec<Line>, Vec<Clipped>) {
    let mut lines = Vec::new();
    let mut clipped = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let mut ok_pts = Vec::new();
        let mut lat_pts = Vec::new();
        let mut prev: Option<u64> = None;
        for p in &s.points {
            if prev.is_some_and(|q| p.second != q + 1) {
                ok_pts.push((0.0, None));
                lat_pts.push((0.0, None));
            }
            prev = Some(p.second);
            let x = time.x(p.second as f64 + 0.5);
            ok_pts.push((x, Some(counts.y(p.ok as f64))));
            let l = if p.requests > 0 && p.p99_ms.is_finite() && p.p99_ms >= 0.0 {
                if latency.is_above(p.p99_ms) {
                    clipped.push(Clipped {
                        x: Px(x),
                        y: Px(latency_top - 1.0),
                        colour: load_colour(i),
                        tip: format!(
                            "{}: p99 {} at {} s (above the axis)",
                            s.name,
                            ms_label(p.p99_ms),
                            p.second
                        ),
                    });
                }
                Some(latency.y(p.p99_ms))
            } else {
                None
            };
            lat_pts.push((x, l));
        }
        lines.push(Line::new(&ok_pts, load_colour(i), 1.8));
        lines.push(Line::new(&lat_pts, load_colour(i), 1.5));
    }
    (lines, clipped)
}

/// A column one second wide over both panels whose tooltip holds every
/// load's figures of that second.
pub(super) struct Hover {
    pub(super) x: Px,
    pub(super) width: Px,
    pub(super) second: u64,
    pub(super) lines: String,
}

/// The hover columns, or none for a run too long to afford them.
pub(super) fn hover(series: &[Series<'_>], time: &TimeScale) -> Option<Vec<Hover>> {
    if series.is_empty() || time.x_max > MAX_HOVER_SECONDS {
        return None;
    }
    let mut by_second: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for s in series {
        for p in &s.points {
            by_second.entry(p.second).or_default().push(format!(
                "{}: {} ok, {} errors, p99 {}",
                s.name,
                p.ok,
                p.errors,
                if p.requests > 0 && p.p99_ms.is_finite() {
                    ms_label(p.p99_ms)
                } else {
                    "n/a".to_string()
                }
            ));
        }
    }
    Some(
        by_second
            .into_iter()
            .filter(|(second, _)| (*second as f64) < time.x_max)
            .map(|(second, lines)| {
                let s = second as f64;
                Hover {
                    x: Px(time.x(s)),
                    width: Px(time.x(s + 1.0) - time.x(s)),
                    second,
                    lines: lines.join("\n"),
                }
            })
            .collect(),
    )
}
