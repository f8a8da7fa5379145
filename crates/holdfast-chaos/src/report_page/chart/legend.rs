//! The legend under the title: a swatch and a label for each load's line
//! and error bars, and for the bands, hatches and markers the chart has,
//! wrapped into as many rows as the width needs.

use super::{CHAR_W, PLOT_LEFT, PLOT_RIGHT, error_colour, load_colour};
use crate::report::RunReport;
use crate::report_page::text::{Px, truncate};

use super::series::Series;

/// Baseline of the first legend row.
pub(super) const LEGEND_Y: f64 = 46.0;

/// Height of one legend row.
const LEGEND_ROW_H: f64 = 16.0;

/// What an entry's swatch shows.
pub(super) enum Swatch {
    /// A load's line, in its colour.
    Line(&'static str),
    /// A load's error bars, in its red.
    Bar(&'static str),
    /// A fault band.
    Band,
    /// A recovery hatch.
    Hatch,
    /// An event marker.
    Event,
}

/// One entry, placed: `x` its left edge, `y` its row's baseline.
pub(super) struct Entry {
    pub(super) swatch: Swatch,
    pub(super) label: String,
    pub(super) x: Px,
    pub(super) y: Px,
}

/// The entries, placed in rows, and how many rows they take.
pub(super) fn entries(report: &RunReport, series: &[Series<'_>]) -> (Vec<Entry>, usize) {
    let mut items: Vec<(Swatch, String)> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        items.push((Swatch::Line(load_colour(i)), truncate(s.name, 28)));
    }
    for (i, s) in series.iter().enumerate() {
        items.push((
            Swatch::Bar(error_colour(i)),
            format!("errors/s {}", truncate(s.name, 20)),
        ));
    }
    if !report.faults.is_empty() {
        items.push((Swatch::Band, "fault".to_string()));
    }
    if report.faults.iter().any(|f| f.recovery_s.is_some()) {
        items.push((Swatch::Hatch, "recovery".to_string()));
    }
    if !report.events.is_empty() {
        items.push((Swatch::Event, "event".to_string()));
    }
    let mut entries = Vec::new();
    let mut row = 0;
    let mut x = PLOT_LEFT;
    for (swatch, label) in items {
        let w = 22.0 + label.chars().count() as f64 * CHAR_W + 16.0;
        if x + w > PLOT_RIGHT && x > PLOT_LEFT {
            row += 1;
            x = PLOT_LEFT;
        }
        entries.push(Entry {
            swatch,
            label,
            x: Px(x),
            y: Px(LEGEND_Y + row as f64 * LEGEND_ROW_H),
        });
        x += w;
    }
    (entries, row + 1)
}

/// Where the legend ends, below its last row.
pub(super) fn bottom(rows: usize) -> f64 {
    LEGEND_Y + (rows as f64 - 1.0) * LEGEND_ROW_H + 8.0
}
