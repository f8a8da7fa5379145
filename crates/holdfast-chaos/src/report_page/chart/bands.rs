//! The faults on the chart: a grey band over both panels for each fault's
//! window, a hatch for the recovery after it, the fault's name above the
//! top panel and a "recovered in X s" bracket between the panels. Names
//! and brackets take the first row where they do not overlap another; past
//! the last row they are left out (the band's tooltip still names them).

use super::scale::TimeScale;
use super::{CHAR_W, MAX_ROWS, ROW_H, WIDTH};
use crate::report::{FaultWindow, RunReport};
use crate::report_page::text::{Px, num, truncate};

/// A fault's name, placed: `x` is the band's start, `text_x` where the name
/// is anchored (at its end when `anchor_end`, near the right edge).
struct NamePlace {
    fault: usize,
    x: f64,
    text_x: f64,
    anchor_end: bool,
    row: usize,
}

/// A recovery bracket, placed: from the fault's end `x0` to recovery `x1`,
/// its text to the right of it or (near the right edge) to the left.
struct BracketPlace {
    fault: usize,
    x0: f64,
    x1: f64,
    row: usize,
    text_right: bool,
}

/// Where the names and brackets go; needed before the panels can be laid
/// out, since their rows take height.
pub(super) struct Placement {
    names: Vec<NamePlace>,
    name_rows: usize,
    brackets: Vec<BracketPlace>,
    bracket_rows: usize,
}

impl Placement {
    /// Rows of names above the top panel.
    pub(super) fn name_rows(&self) -> usize {
        self.name_rows
    }

    /// Rows of brackets between the panels.
    pub(super) fn bracket_rows(&self) -> usize {
        self.bracket_rows
    }
}

/// A horizontal label placed in the first free row, or not at all.
fn place_row(rows: &mut Vec<f64>, x0: f64, x1: f64) -> Option<usize> {
    for (i, end) in rows.iter_mut().enumerate() {
        if *end + 6.0 <= x0 {
            *end = x1;
            return Some(i);
        }
    }
    if rows.len() < MAX_ROWS {
        rows.push(x1);
        Some(rows.len() - 1)
    } else {
        None
    }
}

/// Whether a fault starts where the chart can show it.
fn is_shown(f: &FaultWindow, time: &TimeScale) -> bool {
    f.start_s.is_finite() && f.start_s <= time.x_max
}

/// Places the names and brackets, faults in order of start.
pub(super) fn place(report: &RunReport, time: &TimeScale) -> Placement {
    let mut name_rows: Vec<f64> = Vec::new();
    let mut bracket_rows: Vec<f64> = Vec::new();
    let mut names = Vec::new();
    let mut brackets = Vec::new();
    let mut order: Vec<usize> = (0..report.faults.len()).collect();
    order.sort_by(|&a, &b| {
        report.faults[a]
            .start_s
            .total_cmp(&report.faults[b].start_s)
    });
    for i in order {
        let f = &report.faults[i];
        if !is_shown(f, time) {
            continue;
        }
        let x0 = time.x(f.start_s);
        // Bold labels are a little wider than plain ones.
        let w = truncate(&f.name, 40).chars().count() as f64 * CHAR_W * 1.1;
        // Right of the band's start line, or left of it near the right edge.
        let (text_x, anchor_end) = if x0 + 3.0 + w > WIDTH - 4.0 {
            (x0 - 3.0, true)
        } else {
            (x0 + 3.0, false)
        };
        let (e0, e1) = if anchor_end {
            (text_x - w, x0)
        } else {
            (x0, text_x + w)
        };
        if let Some(row) = place_row(&mut name_rows, e0, e1) {
            names.push(NamePlace {
                fault: i,
                x: x0,
                text_x,
                anchor_end,
                row,
            });
        }
        if let (Some(end), Some(rec)) = (f.end_s, f.recovery_s)
            && end.is_finite()
            && rec.is_finite()
            && rec >= 0.0
            && end <= time.x_max
        {
            let bx0 = time.x(end);
            let bx1 = time.x(end + rec).max(bx0 + 2.0);
            let text_w = (13.0 + num(rec).len() as f64) * CHAR_W + 10.0;
            let right = bx1 + 4.0 + text_w <= WIDTH - 4.0;
            let (e0, e1) = if right {
                (bx0, bx1 + 4.0 + text_w)
            } else {
                (bx0 - 4.0 - text_w, bx1)
            };
            if let Some(row) = place_row(&mut bracket_rows, e0, e1) {
                brackets.push(BracketPlace {
                    fault: i,
                    x0: bx0,
                    x1: bx1,
                    row,
                    text_right: right,
                });
            }
        }
    }
    Placement {
        names,
        name_rows: name_rows.len(),
        brackets,
        bracket_rows: bracket_rows.len(),
    }
}

/// A fault's window over both panels, with the recovery after it.
pub(super) struct Band {
    pub(super) x: Px,
    pub(super) width: Px,
    pub(super) tip: String,
    pub(super) recovery: Option<Hatch>,
}

/// The recovery after a fault.
pub(super) struct Hatch {
    pub(super) x: Px,
    pub(super) width: Px,
    pub(super) tip: String,
}

/// The bands, in the report's order (drawn under the data).
pub(super) fn bands(report: &RunReport, time: &TimeScale) -> Vec<Band> {
    let mut bands = Vec::new();
    for f in &report.faults {
        if !is_shown(f, time) {
            continue;
        }
        let end = match f.end_s {
            Some(e) if e.is_finite() => e.max(f.start_s),
            _ => time.x_max,
        };
        let x0 = time.x(f.start_s);
        let x1 = time.x(end).max(x0 + 2.0);
        let tip = format!(
            "{} ({}): {} s to {}",
            f.name,
            f.kind,
            num(f.start_s),
            match f.end_s {
                Some(e) => format!("{} s", num(e)),
                None => "end of run".to_string(),
            }
        );
        let recovery = match (f.end_s, f.recovery_s) {
            (Some(e), Some(rec))
                if e.is_finite() && rec.is_finite() && rec > 0.0 && e < time.x_max =>
            {
                let r0 = time.x(e);
                let r1 = time.x(e + rec).max(r0 + 1.0);
                Some(Hatch {
                    x: Px(r0),
                    width: Px(r1 - r0),
                    tip: format!("{}: recovered in {} s", f.name, num(rec)),
                })
            }
            _ => None,
        };
        bands.push(Band {
            x: Px(x0),
            width: Px(x1 - x0),
            tip,
            recovery,
        });
    }
    bands
}

/// A fault's name above the top panel, with a tick down to it.
pub(super) struct Name {
    pub(super) x: Px,
    pub(super) y: Px,
    pub(super) text_x: Px,
    pub(super) anchor: &'static str,
    pub(super) tip: String,
    pub(super) text: String,
}

/// A "recovered in X s" bracket between the panels.
pub(super) struct Bracket {
    pub(super) x0: Px,
    pub(super) x1: Px,
    pub(super) y: Px,
    pub(super) text_x: Px,
    pub(super) anchor: &'static str,
    pub(super) seconds: String,
}

impl Placement {
    /// The names, in rows from `strip_top` down.
    pub(super) fn names(&self, report: &RunReport, strip_top: f64) -> Vec<Name> {
        self.names
            .iter()
            .map(|place| {
                let f = &report.faults[place.fault];
                Name {
                    x: Px(place.x),
                    y: Px(strip_top + 4.0 + (place.row as f64 + 1.0) * ROW_H - 3.0),
                    text_x: Px(place.text_x),
                    anchor: if place.anchor_end { "end" } else { "start" },
                    tip: format!("{} ({})", f.name, f.kind),
                    text: truncate(&f.name, 40),
                }
            })
            .collect()
    }

    /// The brackets, in rows from `gap_top` (the top panel's bottom) down.
    pub(super) fn brackets(&self, report: &RunReport, gap_top: f64) -> Vec<Bracket> {
        self.brackets
            .iter()
            .map(|place| {
                let rec = report.faults[place.fault].recovery_s.unwrap_or(0.0);
                let (text_x, anchor) = if place.text_right {
                    (place.x1 + 4.0, "start")
                } else {
                    (place.x0 - 4.0, "end")
                };
                Bracket {
                    x0: Px(place.x0),
                    x1: Px(place.x1),
                    y: Px(gap_top + 16.0 + place.row as f64 * ROW_H),
                    text_x: Px(text_x),
                    anchor,
                    seconds: num(rec),
                }
            })
            .collect()
    }
}
