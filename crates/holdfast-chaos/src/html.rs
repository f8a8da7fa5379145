//! The self-contained HTML page and SVG chart of a run report.
//!
//! [`render_svg`] draws the run's timeline: throughput (answers below 400 per
//! second) of each load as a line with errors per second as red stacked bars
//! in the top panel, p99 latency per second of each load on a log scale in the
//! bottom panel, fault windows as shaded bands, recovery after a fault as a
//! hatch with a "recovered in X s" bracket, and events as thin numbered
//! markers (the numbers match the page's events table; the text is in each
//! marker's tooltip).
//!
//! [`render_html`] wraps that chart in one page with no external resource and
//! no script: verdict, scenario, start time, the tables of invariants, faults,
//! loads and events, and the report's JSON in a `<details>` block.
//!
//! Every text that comes from the report is escaped, and non-finite numbers
//! (NaN, infinities) are drawn as gaps and printed as `n/a`, so no report can
//! make the output invalid.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Compare, InvariantResult, RunReport};

// ---------------------------------------------------------------------------
// Layout and colours.

/// Width of the chart.
const WIDTH: f64 = 960.0;
/// Left edge of the plot area (room for the y tick labels and axis titles).
const PLOT_LEFT: f64 = 72.0;
/// Right edge of the plot area.
const PLOT_RIGHT: f64 = 940.0;
/// Height of the throughput panel.
const TOP_PANEL_H: f64 = 150.0;
/// Height of the latency panel.
const BOTTOM_PANEL_H: f64 = 110.0;
/// Height of one row of fault labels or recovery brackets.
const ROW_H: f64 = 14.0;
/// Most rows of fault labels or recovery brackets; later ones get tooltips only.
const MAX_ROWS: usize = 3;
/// Rough width of one character at 11px, for laying out labels.
const CHAR_W: f64 = 6.2;
/// Seconds past which the per-second hover columns are left out (size).
const MAX_HOVER_SECONDS: f64 = 1200.0;

/// Line colours of the loads (no red: red is for errors).
const LOAD_COLOURS: [&str; 7] = [
    "#1f6fd1", "#e08a00", "#7b3fbf", "#138a72", "#8c564b", "#d4379b", "#5f6b7a",
];
/// Fills of the error bars, one shade of red per load.
const ERROR_COLOURS: [&str; 4] = ["#d62728", "#ff9896", "#a50f15", "#fb6a4a"];
/// Fault band fill.
const FAULT_FILL: &str = "#8c959f";
/// Green of a pass.
const PASS_COLOUR: &str = "#1a7f37";
/// Red of a failure.
const FAIL_COLOUR: &str = "#cf222e";
/// Ink of axes and labels.
const INK: &str = "#24292f";
/// Ink of secondary text.
const MUTED: &str = "#57606a";
/// Grid lines.
const GRID: &str = "#e6e8eb";
/// Axis frame and ticks.
const AXIS: &str = "#afb8c1";
/// Background.
const WHITE: &str = "#ffffff";
/// Fill of invisible hover targets.
const BLACK: &str = "#000000";

fn load_colour(i: usize) -> &'static str {
    LOAD_COLOURS[i % LOAD_COLOURS.len()]
}

fn error_colour(i: usize) -> &'static str {
    ERROR_COLOURS[i % ERROR_COLOURS.len()]
}

// ---------------------------------------------------------------------------
// Text and numbers.

/// XML/HTML escaping of text and attribute values; characters that XML 1.0
/// does not allow (most control characters) are dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Shortens `s` to at most `max` characters, with an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A number for people: no more than two decimals, trailing zeros dropped,
/// `n/a` for NaN and infinities.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// A coordinate: one decimal is plenty.
fn c(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else {
        "0".to_string()
    }
}

/// Milliseconds for an axis label: `12 ms`, `1.5 s`.
fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", num(v / 1000.0))
    } else {
        format!("{} ms", num(v))
    }
}

/// Seconds for people: `42.5 s`, `2 min 5 s`, `1 h 2 min`.
fn duration_text(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "n/a".to_string();
    }
    if s < 60.0 {
        return format!("{} s", num(s));
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{} s ({h} h {m} min)", num(s))
    } else if sec == 0 {
        format!("{} s ({m} min)", num(s))
    } else {
        format!("{} s ({m} min {sec} s)", num(s))
    }
}

/// `2026-05-01 12:34:56 UTC` from unix milliseconds (proleptic Gregorian).
fn utc_text(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = holdfast_core::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Smallest of 1, 2, 5 × 10^k at least `v` (1 for non-positive or NaN).
fn nice_ceil(v: f64) -> f64 {
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

// ---------------------------------------------------------------------------
// The chart.

/// One load's timeline, sorted by second, duplicates dropped.
struct Series<'a> {
    name: &'a str,
    points: Vec<&'a crate::report::SecondPoint>,
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

/// Appends a polyline of `points` (x, y or None for a gap) as a path, with
/// isolated points drawn as dots.
fn line_path(out: &mut String, points: &[(f64, Option<f64>)], colour: &str, width: f64) {
    let mut d = String::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut dots: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, d: &mut String, dots: &mut Vec<(f64, f64)>| {
        match run.len() {
            0 => {}
            1 => dots.push(run[0]),
            _ => {
                for (i, (x, y)) in run.iter().enumerate() {
                    let _ = write!(d, "{}{} {}", if i == 0 { "M" } else { "L" }, c(*x), c(*y));
                }
            }
        }
        run.clear();
    };
    for &(x, y) in points {
        match y {
            Some(y) if y.is_finite() && x.is_finite() => run.push((x, y)),
            _ => flush(&mut run, &mut d, &mut dots),
        }
    }
    flush(&mut run, &mut d, &mut dots);
    if !d.is_empty() {
        let _ = writeln!(
            out,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-linejoin="round" stroke-linecap="round"/>"#
        );
    }
    for (x, y) in dots {
        let _ = writeln!(
            out,
            r#"<circle cx="{}" cy="{}" r="2.2" fill="{colour}"/>"#,
            c(x),
            c(y)
        );
    }
}

/// The chart alone: an SVG document (for the README and the page).
///
/// About 960×420 (taller when the legend or the fault labels need more rows),
/// on a white background so it reads the same in light and dark viewers.
/// Time runs left to right in seconds since the start of the run. The top
/// panel shows answers below 400 per second of each load as a coloured line
/// and errors per second as red bars stacked by load; the bottom panel shows
/// each load's p99 latency per second on a log scale topped at the 99th
/// percentile of those points (points above it are drawn on the top edge with
/// a triangle). Fault windows are grey bands labelled with the fault's name,
/// the recovery after a fault is hatched and bracketed "recovered in X s",
/// events are dashed markers numbered as in the page's table, with
/// `source: what` as tooltip.
pub fn render_svg(report: &RunReport) -> String {
    let series: Vec<Series<'_>> = report
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
        .collect();

    // The time axis.
    let mut x_max = if report.duration_s.is_finite() && report.duration_s > 0.0 {
        report.duration_s
    } else {
        0.0
    };
    for s in &series {
        if let Some(p) = s.points.last() {
            x_max = x_max.max(p.second as f64 + 1.0);
        }
    }
    if x_max <= 0.0 {
        x_max = 1.0;
    }
    let plot_w = PLOT_RIGHT - PLOT_LEFT;
    let xs = |t: f64| PLOT_LEFT + (t.clamp(0.0, x_max) / x_max) * plot_w;

    // Legend items: (swatch kind, colour, label).
    enum Swatch {
        Line(&'static str),
        Bar(&'static str),
        Band,
        Hatch,
        Event,
    }
    let mut legend: Vec<(Swatch, String)> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        legend.push((Swatch::Line(load_colour(i)), truncate(s.name, 28)));
    }
    for (i, s) in series.iter().enumerate() {
        legend.push((
            Swatch::Bar(error_colour(i)),
            format!("errors/s {}", truncate(s.name, 20)),
        ));
    }
    if !report.faults.is_empty() {
        legend.push((Swatch::Band, "fault".to_string()));
    }
    if report.faults.iter().any(|f| f.recovery_s.is_some()) {
        legend.push((Swatch::Hatch, "recovery".to_string()));
    }
    if !report.events.is_empty() {
        legend.push((Swatch::Event, "event".to_string()));
    }
    let mut legend_rows: Vec<Vec<(f64, &(Swatch, String))>> = vec![Vec::new()];
    let mut lx = PLOT_LEFT;
    for item in &legend {
        let w = 22.0 + item.1.chars().count() as f64 * CHAR_W + 16.0;
        if lx + w > PLOT_RIGHT && lx > PLOT_LEFT {
            legend_rows.push(Vec::new());
            lx = PLOT_LEFT;
        }
        if let Some(row) = legend_rows.last_mut() {
            row.push((lx, item));
        }
        lx += w;
    }

    // Fault labels above the top panel, recovery brackets between panels.
    let mut fault_rows: Vec<f64> = Vec::new();
    let mut fault_labels: Vec<(usize, f64, f64, bool, usize)> = Vec::new();
    let mut rec_rows: Vec<f64> = Vec::new();
    let mut rec_labels: Vec<(usize, f64, f64, usize, bool)> = Vec::new();
    let mut order: Vec<usize> = (0..report.faults.len()).collect();
    order.sort_by(|&a, &b| {
        report.faults[a]
            .start_s
            .total_cmp(&report.faults[b].start_s)
    });
    for &i in &order {
        let f = &report.faults[i];
        if !f.start_s.is_finite() || f.start_s > x_max {
            continue;
        }
        let x0 = xs(f.start_s);
        // Bold labels are a little wider than plain ones.
        let w = truncate(&f.name, 40).chars().count() as f64 * CHAR_W * 1.1;
        // Right of the band's start line, or left of it near the right edge.
        let (tx, anchor_end) = if x0 + 3.0 + w > WIDTH - 4.0 {
            (x0 - 3.0, true)
        } else {
            (x0 + 3.0, false)
        };
        let (e0, e1) = if anchor_end {
            (tx - w, x0)
        } else {
            (x0, tx + w)
        };
        if let Some(row) = place_row(&mut fault_rows, e0, e1) {
            fault_labels.push((i, x0, tx, anchor_end, row));
        }
        if let (Some(end), Some(rec)) = (f.end_s, f.recovery_s)
            && end.is_finite()
            && rec.is_finite()
            && rec >= 0.0
            && end <= x_max
        {
            let bx0 = xs(end);
            let bx1 = xs(end + rec).max(bx0 + 2.0);
            let text_w = (13.0 + num(rec).len() as f64) * CHAR_W + 10.0;
            let right = bx1 + 4.0 + text_w <= WIDTH - 4.0;
            let (e0, e1) = if right {
                (bx0, bx1 + 4.0 + text_w)
            } else {
                (bx0 - 4.0 - text_w, bx1)
            };
            if let Some(row) = place_row(&mut rec_rows, e0, e1) {
                rec_labels.push((i, bx0, bx1, row, right));
            }
        }
    }

    // Vertical layout.
    let title_y = 24.0;
    let legend_y = 46.0;
    let legend_bottom = legend_y + (legend_rows.len() as f64 - 1.0) * 16.0 + 8.0;
    let fault_strip = fault_rows.len() as f64 * ROW_H;
    let top_y = legend_bottom + 6.0 + fault_strip;
    let top_bottom = top_y + TOP_PANEL_H;
    let mid_h = (rec_rows.len().max(1) as f64) * ROW_H + 14.0;
    let bot_y = top_bottom + mid_h;
    let bot_bottom = bot_y + BOTTOM_PANEL_H;
    let ticks_y = bot_bottom + 14.0;
    let events_y = ticks_y + 16.0;
    let axis_title_y = if report.events.is_empty() {
        ticks_y + 16.0
    } else {
        events_y + 16.0
    };
    let height = (axis_title_y + 10.0).max(420.0);

    // Top panel scale: ok per second and stacked errors per second.
    let mut errors_at: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    let mut top_max: f64 = 0.0;
    for (i, s) in series.iter().enumerate() {
        for p in &s.points {
            top_max = top_max.max(p.ok as f64);
            if p.errors > 0 {
                errors_at.entry(p.second).or_default().push((i, p.errors));
            }
        }
    }
    for v in errors_at.values() {
        top_max = top_max.max(v.iter().map(|(_, e)| *e as f64).sum());
    }
    let step = nice_ceil((top_max / 4.0).max(1.0));
    let y_top = (top_max / step).ceil().max(1.0) * step;
    let ys_top = |v: f64| top_bottom - (v.clamp(0.0, y_top) / y_top) * TOP_PANEL_H;

    // Bottom panel scale: log10 of p99 ms.
    let mut lat: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.requests > 0 && p.p99_ms.is_finite() && p.p99_ms > 0.0)
        .map(|p| p.p99_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let (lat_lo, lat_hi) = if lat.is_empty() {
        (1.0, 1000.0)
    } else {
        let lo = 10f64.powf(lat[0].log10().floor());
        let hi = nice_ceil(percentile(&lat, 99.0));
        let hi = if hi <= lo { lo * 10.0 } else { hi };
        (lo, hi)
    };
    let (llo, lhi) = (lat_lo.log10(), lat_hi.log10());
    let ys_bot = |v: f64| {
        bot_bottom - ((v.max(lat_lo).log10() - llo) / (lhi - llo)).min(1.0) * BOTTOM_PANEL_H
    };

    let mut o = String::with_capacity(32 * 1024);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="11" role="img" aria-labelledby="hf-title">"#,
        w = c(WIDTH),
        h = c(height)
    );
    let verdict = if report.passed { "PASSED" } else { "FAILED" };
    let _ = writeln!(
        o,
        "<title id=\"hf-title\">{}: {verdict}</title>",
        esc(&report.scenario)
    );
    let _ = writeln!(
        o,
        r#"<defs><pattern id="hf-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="{FAULT_FILL}" fill-opacity="0.07"/><line x1="0" y1="0" x2="0" y2="6" stroke="{FAULT_FILL}" stroke-width="2" stroke-opacity="0.45"/></pattern></defs>"#
    );
    let _ = writeln!(
        o,
        r#"<rect x="0" y="0" width="{}" height="{}" fill="{WHITE}"/>"#,
        c(WIDTH),
        c(height)
    );

    // Title and subtitle.
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" font-size="17" font-weight="600" fill="{INK}">{} <tspan fill="{}">{verdict}</tspan></text>"#,
        c(PLOT_LEFT),
        c(title_y),
        esc(&truncate(&report.scenario, 60)),
        if report.passed {
            PASS_COLOUR
        } else {
            FAIL_COLOUR
        }
    );
    let held = report.invariants.iter().filter(|i| i.ok).count();
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="end" font-size="12" fill="{MUTED}">{} · {held}/{} invariants held{}</text>"#,
        c(PLOT_RIGHT),
        c(title_y),
        esc(&duration_text(report.duration_s)),
        report.invariants.len(),
        if report.short { " · short" } else { "" }
    );

    // Legend.
    for (r, row) in legend_rows.iter().enumerate() {
        let y = legend_y + r as f64 * 16.0;
        for (x, (swatch, label)) in row {
            let sw = match swatch {
                Swatch::Line(col) => format!(
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{col}" stroke-width="2.5"/>"#,
                    c(*x),
                    c(y - 4.0),
                    c(x + 16.0),
                    c(y - 4.0)
                ),
                Swatch::Bar(col) => format!(
                    r#"<rect x="{}" y="{}" width="16" height="8" fill="{col}"/>"#,
                    c(*x),
                    c(y - 8.0)
                ),
                Swatch::Band => format!(
                    r#"<rect x="{}" y="{}" width="16" height="10" fill="{FAULT_FILL}" fill-opacity="0.28"/>"#,
                    c(*x),
                    c(y - 9.0)
                ),
                Swatch::Hatch => format!(
                    r#"<rect x="{}" y="{}" width="16" height="10" fill="url(#hf-hatch)" stroke="{FAULT_FILL}" stroke-width="0.5"/>"#,
                    c(*x),
                    c(y - 9.0)
                ),
                Swatch::Event => format!(
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{MUTED}" stroke-dasharray="2 2"/>"#,
                    c(x + 8.0),
                    c(y - 10.0),
                    c(x + 8.0),
                    c(y + 1.0)
                ),
            };
            let _ = writeln!(
                o,
                r#"{sw}<text x="{}" y="{}" fill="{INK}">{}</text>"#,
                c(x + 22.0),
                c(y),
                esc(label)
            );
        }
    }

    // Grid, axes and tick labels.
    let _ = writeln!(o, r#"<g stroke="{GRID}" stroke-width="1">"#);
    let mut t = 0.0;
    while t <= y_top + 1e-9 {
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            c(PLOT_LEFT),
            c(PLOT_RIGHT),
            y = c(ys_top(t))
        );
        t += step;
    }
    let mut lat_ticks: Vec<f64> = Vec::new();
    let decades = (lhi - llo).round().max(1.0) as i32;
    let mut d = lat_lo;
    while d <= lat_hi * (1.0 + 1e-9) {
        for f in [1.0, 2.0, 5.0] {
            let v = d * f;
            if (f == 1.0 || decades <= 2)
                && v >= lat_lo * (1.0 - 1e-9)
                && v <= lat_hi * (1.0 + 1e-9)
            {
                lat_ticks.push(v);
            }
        }
        d *= 10.0;
    }
    if lat_ticks
        .last()
        .is_none_or(|&v| (v - lat_hi).abs() > lat_hi * 1e-6)
    {
        lat_ticks.push(lat_hi);
    }
    for &v in &lat_ticks {
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"#,
            c(PLOT_LEFT),
            c(PLOT_RIGHT),
            y = c(ys_bot(v))
        );
    }
    let _ = writeln!(o, "</g>");

    let x_step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|s| x_max / s <= 12.0)
    .unwrap_or_else(|| nice_ceil(x_max / 12.0));

    // Fault bands and recovery hatches, under the data.
    for f in &report.faults {
        if !f.start_s.is_finite() || f.start_s > x_max {
            continue;
        }
        let end = match f.end_s {
            Some(e) if e.is_finite() => e.max(f.start_s),
            _ => x_max,
        };
        let x0 = xs(f.start_s);
        let x1 = xs(end).max(x0 + 2.0);
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
        for (py, ph) in [(top_y, TOP_PANEL_H), (bot_y, BOTTOM_PANEL_H)] {
            let _ = writeln!(
                o,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{FAULT_FILL}" fill-opacity="0.22"><title>{}</title></rect>"#,
                c(x0),
                c(py),
                c(x1 - x0),
                c(ph),
                esc(&tip)
            );
        }
        if let (Some(e), Some(rec)) = (f.end_s, f.recovery_s)
            && e.is_finite()
            && rec.is_finite()
            && rec > 0.0
            && e < x_max
        {
            let r0 = xs(e);
            let r1 = xs(e + rec).max(r0 + 1.0);
            for (py, ph) in [(top_y, TOP_PANEL_H), (bot_y, BOTTOM_PANEL_H)] {
                let _ = writeln!(
                    o,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="url(#hf-hatch)"><title>{}</title></rect>"#,
                    c(r0),
                    c(py),
                    c(r1 - r0),
                    c(ph),
                    esc(&format!("{}: recovered in {} s", f.name, num(rec)))
                );
            }
        }
    }
    for (i, x0, tx, anchor_end, row) in &fault_labels {
        let f = &report.faults[*i];
        let y = legend_bottom + 4.0 + (*row as f64 + 1.0) * ROW_H - 3.0;
        let _ = writeln!(
            o,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{MUTED}" stroke-width="1"/><text x="{}" y="{}" text-anchor="{}" font-weight="600" fill="{INK}"><title>{}</title>{}</text>"#,
            c(y - 9.0),
            c(top_y),
            c(*tx),
            c(y),
            if *anchor_end { "end" } else { "start" },
            esc(&format!("{} ({})", f.name, f.kind)),
            esc(&truncate(&f.name, 40)),
            x = c(*x0),
        );
    }
    for (i, bx0, bx1, row, right) in &rec_labels {
        let f = &report.faults[*i];
        let rec = f.recovery_s.unwrap_or(0.0);
        let y = top_bottom + 16.0 + *row as f64 * ROW_H;
        let _ = writeln!(
            o,
            r#"<path d="M{a} {y0}V{y}H{b}V{y0}" fill="none" stroke="{INK}" stroke-width="1.2"/>"#,
            a = c(*bx0),
            b = c(*bx1),
            y0 = c(y - 5.0),
            y = c(y),
        );
        let (tx, anchor) = if *right {
            (bx1 + 4.0, "start")
        } else {
            (bx0 - 4.0, "end")
        };
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="{anchor}" fill="{INK}">recovered in {} s</text>"#,
            c(tx),
            c(y + 3.5),
            num(rec)
        );
    }

    // Error bars, stacked by load.
    let slot = plot_w / x_max;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    for (second, errs) in &errors_at {
        let s = *second as f64;
        if s >= x_max {
            continue;
        }
        let x0 = xs(s) + gap / 2.0;
        let w = (xs(s + 1.0) - xs(s) - gap).max(0.5);
        let mut acc = 0.0;
        for (i, e) in errs {
            let y1 = ys_top(acc);
            acc += *e as f64;
            let y0 = ys_top(acc);
            let _ = writeln!(
                o,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="0.85"/>"#,
                c(x0),
                c(y0),
                c(w),
                c((y1 - y0).max(0.0)),
                error_colour(*i)
            );
        }
    }

    // Throughput and latency lines.
    let mut clipped: Vec<(usize, u64, f64)> = Vec::new();
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
            let x = xs(p.second as f64 + 0.5);
            ok_pts.push((x, Some(ys_top(p.ok as f64))));
            let l = if p.requests > 0 && p.p99_ms.is_finite() && p.p99_ms >= 0.0 {
                if p.p99_ms > lat_hi * (1.0 + 1e-9) {
                    clipped.push((i, p.second, p.p99_ms));
                }
                Some(ys_bot(p.p99_ms))
            } else {
                None
            };
            lat_pts.push((x, l));
        }
        line_path(&mut o, &ok_pts, load_colour(i), 1.8);
        line_path(&mut o, &lat_pts, load_colour(i), 1.5);
    }
    for (i, second, v) in &clipped {
        let x = xs(*second as f64 + 0.5);
        let y = bot_y;
        let _ = writeln!(
            o,
            r#"<path d="M{} {}l-4 7h8z" fill="{}" stroke="{WHITE}" stroke-width="0.8"><title>{}: p99 {} at {} s (above the axis)</title></path>"#,
            c(x),
            c(y - 1.0),
            load_colour(*i),
            esc(series[*i].name),
            esc(&ms_label(*v)),
            second
        );
    }
    if series.iter().all(|s| s.points.is_empty()) {
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" fill="{MUTED}">no load data</text>"#,
            c((PLOT_LEFT + PLOT_RIGHT) / 2.0),
            c(top_y + TOP_PANEL_H / 2.0)
        );
    }

    // Per-second hover columns (tooltips without script).
    if !series.is_empty() && x_max <= MAX_HOVER_SECONDS {
        let mut by_second: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for s in &series {
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
        let _ = writeln!(o, r#"<g fill="{BLACK}" fill-opacity="0">"#);
        for (second, lines) in by_second {
            let s = second as f64;
            if s >= x_max {
                continue;
            }
            let _ = writeln!(
                o,
                r#"<rect x="{}" y="{}" width="{}" height="{}"><title>{} s&#10;{}</title></rect>"#,
                c(xs(s)),
                c(top_y),
                c(xs(s + 1.0) - xs(s)),
                c(bot_bottom - top_y),
                second,
                esc(&lines.join("\n"))
            );
        }
        let _ = writeln!(o, "</g>");
    }

    // Events: dashed markers with tooltips; numbers where there is room.
    let mut last_label_x = f64::NEG_INFINITY;
    for (n, e) in report.events.iter().enumerate() {
        if !e.at_s.is_finite() || e.at_s < 0.0 || e.at_s > x_max {
            continue;
        }
        let x = xs(e.at_s);
        let tip = format!("#{} at {} s, {}: {}", n + 1, num(e.at_s), e.source, e.what);
        let _ = writeln!(
            o,
            r#"<g><title>{tip}</title><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{MUTED}" stroke-width="1" stroke-dasharray="2 3" stroke-opacity="0.8"/><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{BLACK}" stroke-opacity="0" stroke-width="6"/>"#,
            c(top_y),
            c(bot_bottom + 4.0),
            c(top_y),
            c(bot_bottom + 4.0),
            tip = esc(&tip),
            x = c(x),
        );
        let label = (n + 1).to_string();
        let half = label.len() as f64 * CHAR_W / 2.0 + 3.0;
        if x - half >= last_label_x + 2.0 {
            last_label_x = x + half;
            let _ = write!(
                o,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="{MUTED}">{label}</text>"#,
                c(x),
                c(events_y)
            );
        }
        let _ = writeln!(o, "</g>");
    }

    // Axes on top.
    for (py, ph) in [(top_y, TOP_PANEL_H), (bot_y, BOTTOM_PANEL_H)] {
        let _ = writeln!(
            o,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{AXIS}" stroke-width="1"/>"##,
            c(PLOT_LEFT),
            c(py),
            c(plot_w),
            c(ph)
        );
    }
    let mut t = 0.0;
    while t <= y_top + 1e-9 {
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end" fill="{MUTED}">{}</text>"#,
            c(PLOT_LEFT - 6.0),
            c(ys_top(t) + 3.5),
            num(t)
        );
        t += step;
    }
    for &v in &lat_ticks {
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end" fill="{MUTED}">{}</text>"#,
            c(PLOT_LEFT - 6.0),
            c(ys_bot(v) + 3.5),
            esc(&ms_label(v))
        );
    }
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let x = xs(t);
        let _ = writeln!(
            o,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{AXIS}"/><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{AXIS}"/><text x="{x}" y="{}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
            c(top_bottom),
            c(top_bottom + 4.0),
            c(bot_bottom),
            c(bot_bottom + 4.0),
            c(ticks_y),
            num(t),
            x = c(x)
        );
        t += x_step;
    }
    let label_x = 16.0;
    for (label, mid) in [
        ("ok/s · errors/s", top_y + TOP_PANEL_H / 2.0),
        ("p99 latency (log)", bot_y + BOTTOM_PANEL_H / 2.0),
    ] {
        let _ = writeln!(
            o,
            r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})" fill="{INK}">{label}</text>"#,
            x = c(label_x),
            y = c(mid)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle" fill="{INK}">seconds since start{}</text>"#,
        c((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        c(axis_title_y),
        if report.events.is_empty() {
            ""
        } else {
            " (numbers: events)"
        }
    );
    o.push_str("</svg>\n");
    o
}

// ---------------------------------------------------------------------------
// The page.

/// Page CSS: light, system fonts, no external resource.
const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: #24292f;
  font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 16px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h1 code { font-size: 22px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.desc { color: #57606a; margin: 0 0 16px; }
.verdict { border-radius: 6px; padding: 12px 16px; font-size: 18px; font-weight: 600; border: 1px solid; }
.verdict.pass { background: #dafbe1; color: #1a7f37; border-color: #4ac26b; }
.verdict.fail { background: #ffebe9; color: #cf222e; border-color: #ff8182; }
.verdict span { font-weight: 400; font-size: 14px; color: #24292f; margin-left: 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 16px 0; }
dl.meta dt { color: #57606a; }
dl.meta dd { margin: 0; }
figure { margin: 0; background: #ffffff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: #57606a; font-size: 12px; padding: 4px 8px 0; }
table { border-collapse: collapse; width: 100%; background: #ffffff; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: #fff5f5; }
.ok { color: #1a7f37; font-weight: 700; }
.ko { color: #cf222e; font-weight: 700; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.none { color: #57606a; font-style: italic; }
details { margin-top: 28px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #ffffff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px; overflow: auto; font-size: 12px; max-height: 480px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
footer { margin-top: 32px; color: #57606a; font-size: 12px; }
"#;

/// A value with its unit for people: `0`, `0.5 %`, `3.2 s`.
fn with_unit(v: f64, unit: &str) -> String {
    let n = num(v);
    match unit {
        "" | "count" => n,
        "percent" | "%" => format!("{n} %"),
        "seconds" | "s" => format!("{n} s"),
        "ms" | "milliseconds" => format!("{n} ms"),
        u => format!("{n} {u}"),
    }
}

fn invariant_row(out: &mut String, inv: &InvariantResult) {
    let cmp = match inv.compare {
        Compare::AtMost => "≤",
        Compare::AtLeast => "≥",
    };
    let _ = writeln!(
        out,
        r#"<tr{}><td><code>{}</code></td><td class="n">{}</td><td class="n">{cmp} {}</td><td>{}</td><td>{}</td></tr>"#,
        if inv.ok { "" } else { r#" class="bad""# },
        esc(&inv.name),
        esc(&with_unit(inv.value, &inv.unit)),
        esc(&with_unit(inv.limit, &inv.unit)),
        if inv.ok {
            r#"<span class="ok" title="held">✓</span>"#
        } else {
            r#"<span class="ko" title="broken">✗</span>"#
        },
        esc(&inv.detail)
    );
}

/// Seconds or a dash.
fn secs(v: Option<f64>, none: &str) -> String {
    match v {
        Some(v) => format!("{} s", num(v)),
        None => none.to_string(),
    }
}

/// The whole page: self-contained HTML (inline CSS, the SVG inline, no
/// external URL, no script).
///
/// It holds the verdict banner (green when the run passed, red when it
/// failed), the scenario and its description, the start time in UTC and the
/// duration, the chart of [`render_svg`], the tables of invariants, faults,
/// loads and events (numbered as the chart's event markers), and the whole
/// report as pretty-printed JSON in a `<details>` block.
pub fn render_html(report: &RunReport) -> String {
    let verdict = if report.passed { "PASSED" } else { "FAILED" };
    let broken = report.invariants.iter().filter(|i| !i.ok).count();
    let total = report.invariants.len();
    let summary = if total == 0 {
        "no invariant was checked".to_string()
    } else if broken == 0 {
        format!("all {total} invariants held")
    } else {
        format!("{broken} of {total} invariants broken")
    };

    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        o,
        "<title>{verdict}: {} (holdfast chaos run)</title>",
        esc(&report.scenario)
    );
    let _ = writeln!(o, "<style>{CSS}</style>\n</head>\n<body>\n<main>");
    let _ = writeln!(
        o,
        "<h1>Chaos run: <code>{}</code></h1>",
        esc(&report.scenario)
    );
    if !report.description.is_empty() {
        let _ = writeln!(o, r#"<p class="desc">{}</p>"#, esc(&report.description));
    }
    let _ = writeln!(
        o,
        r#"<div class="verdict {}" role="status">{verdict}<span>{}</span></div>"#,
        if report.passed { "pass" } else { "fail" },
        esc(&summary)
    );
    let _ = writeln!(
        o,
        "<dl class=\"meta\"><dt>Started</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd><dt>Form</dt><dd>{}</dd></dl>",
        utc_text(report.started_at_unix_ms),
        esc(&duration_text(report.duration_s)),
        if report.short { "short (CI)" } else { "full" }
    );

    o.push_str("<h2>Timeline</h2>\n<figure>\n");
    o.push_str(&render_svg(report));
    o.push_str(
        "<figcaption>Top: answers below 400 per second of each load (lines) and errors per second \
         (red bars, stacked by load). Bottom: p99 latency per second, log scale; a triangle on the \
         top edge marks a point above the axis. Grey bands: faults; hatched: recovery after a \
         fault; dashed lines: events, numbered as in the table below. Hover for values.</figcaption>\n</figure>\n",
    );

    o.push_str("<h2>Invariants</h2>\n");
    if report.invariants.is_empty() {
        o.push_str("<p class=\"none\">No invariant was checked.</p>\n");
    } else {
        o.push_str(
            "<table>\n<thead><tr><th>Invariant</th><th>Value</th><th>Limit</th><th>OK</th><th>Detail</th></tr></thead>\n<tbody>\n",
        );
        for inv in &report.invariants {
            invariant_row(&mut o, inv);
        }
        o.push_str("</tbody>\n</table>\n");
    }

    o.push_str("<h2>Faults</h2>\n");
    if report.faults.is_empty() {
        o.push_str("<p class=\"none\">No fault was played.</p>\n");
    } else {
        o.push_str(
            "<table>\n<thead><tr><th>Fault</th><th>Kind</th><th>Start</th><th>End</th><th>Recovery</th></tr></thead>\n<tbody>\n",
        );
        for f in &report.faults {
            let _ = writeln!(
                o,
                r#"<tr><td>{}</td><td><code>{}</code></td><td class="n">{} s</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(&f.name),
                esc(&f.kind),
                num(f.start_s),
                secs(f.end_s, "end of run"),
                secs(f.recovery_s, "—")
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }

    o.push_str("<h2>Loads</h2>\n");
    if report.loads.is_empty() {
        o.push_str("<p class=\"none\">No load ran.</p>\n");
    } else {
        o.push_str(
            "<table>\n<thead><tr><th>Load</th><th>Target</th><th>Requests</th><th>OK</th><th>Errors</th><th>req/s</th><th>p50</th><th>p99</th><th>max</th></tr></thead>\n<tbody>\n",
        );
        for (i, l) in report.loads.iter().enumerate() {
            let err_pct = if l.requests > 0 {
                format!(" ({} %)", num(l.errors as f64 * 100.0 / l.requests as f64))
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                r#"<tr><td><span class="swatch" style="background:{}"></span>{}</td><td><code>{}</code></td><td class="n">{}</td><td class="n">{}</td><td class="n">{}{err_pct}</td><td class="n">{}</td><td class="n">{} ms</td><td class="n">{} ms</td><td class="n">{} ms</td></tr>"#,
                load_colour(i),
                esc(&l.name),
                esc(&l.target),
                l.requests,
                l.ok,
                l.errors,
                num(l.rps),
                num(l.p50_ms),
                num(l.p99_ms),
                num(l.max_ms)
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }

    o.push_str("<h2>Events</h2>\n");
    if report.events.is_empty() {
        o.push_str("<p class=\"none\">No event was recorded.</p>\n");
    } else {
        o.push_str(
            "<table>\n<thead><tr><th>#</th><th>At</th><th>Source</th><th>What</th></tr></thead>\n<tbody>\n",
        );
        for (n, e) in report.events.iter().enumerate() {
            let _ = writeln!(
                o,
                r#"<tr><td class="n">{}</td><td class="n">{} s</td><td><code>{}</code></td><td>{}</td></tr>"#,
                n + 1,
                num(e.at_s),
                esc(&e.source),
                esc(&e.what)
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }

    let json = serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("report could not be written as JSON: {e}"));
    let _ = writeln!(
        o,
        "<details>\n<summary>Report JSON</summary>\n<pre><code>{}</code></pre>\n</details>",
        esc(&json)
    );
    let _ = writeln!(
        o,
        "<footer>holdfast chaos · scenario <code>{}</code> · started {}</footer>",
        esc(&report.scenario),
        utc_text(report.started_at_unix_ms)
    );
    o.push_str("</main>\n</body>\n</html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Event, FaultWindow, LoadSeries, SecondPoint};

    /// Two loads over 30 s, a Redis kill from 10 s to 12 s recovered in
    /// 3.5 s, a proxy fault to the end of the run, two events, one broken
    /// invariant, and names with characters to escape.
    fn sample() -> RunReport {
        let load = |name: &str, target: &str, base: u64, lat: f64| {
            let timeline: Vec<SecondPoint> = (0..30)
                .map(|s| {
                    let down = (10..14).contains(&s);
                    let errors = if down { base / 2 } else { u64::from(s == 20) };
                    let ok = if down { base / 10 } else { base };
                    SecondPoint {
                        second: s,
                        requests: ok + errors,
                        ok,
                        errors,
                        p99_ms: if down {
                            lat * 40.0
                        } else {
                            lat + (s % 5) as f64
                        },
                    }
                })
                .collect();
            let ok = timeline.iter().map(|p| p.ok).sum();
            let errors = timeline.iter().map(|p| p.errors).sum();
            LoadSeries {
                name: name.to_string(),
                target: target.to_string(),
                requests: ok + errors,
                ok,
                errors,
                rps: (ok + errors) as f64 / 30.0,
                p50_ms: lat,
                p99_ms: lat * 3.0,
                max_ms: lat * 50.0,
                timeline,
            }
        };
        RunReport {
            scenario: "redis-kill <redis & \"co\">".to_string(),
            description: "Kill Redis mid-run; nothing accepted is lost & it's back quickly."
                .to_string(),
            passed: false,
            short: true,
            started_at_unix_ms: 1_767_225_600_123,
            duration_s: 30.0,
            invariants: vec![
                InvariantResult {
                    name: "accepted_jobs_lost".to_string(),
                    value: 0.0,
                    limit: 0.0,
                    compare: Compare::AtMost,
                    ok: true,
                    unit: "count".to_string(),
                    detail: "Jobs answered 202 that never ran.".to_string(),
                },
                InvariantResult {
                    name: "recovery_seconds".to_string(),
                    value: 3.5,
                    limit: 3.0,
                    compare: Compare::AtMost,
                    ok: false,
                    unit: "seconds".to_string(),
                    detail: "From the end of the fault to 5 healthy seconds <in a row>."
                        .to_string(),
                },
            ],
            faults: vec![
                FaultWindow {
                    name: "redis SIGKILL <redis & \"co\">".to_string(),
                    kind: "redis_kill".to_string(),
                    start_s: 10.0,
                    end_s: Some(12.0),
                    recovery_s: Some(3.5),
                },
                FaultWindow {
                    name: "latency 50ms".to_string(),
                    kind: "proxy".to_string(),
                    start_s: 24.0,
                    end_s: None,
                    recovery_s: None,
                },
            ],
            events: vec![
                Event {
                    at_s: 10.0,
                    source: "runner".to_string(),
                    what: "kill -9 redis".to_string(),
                },
                Event {
                    at_s: 10.4,
                    source: "api".to_string(),
                    what: "redis ready -> reconnecting <'x'>".to_string(),
                },
            ],
            loads: vec![
                load("calls <redis & \"co\">", "POST calls-target", 400, 4.0),
                load("jobs", "POST jobs-target", 150, 9.0),
            ],
        }
    }

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    /// Parses `svg` with Python's XML parser when python3 is around.
    fn python_parses(svg: &str, tag: &str) -> Option<bool> {
        let path = std::env::temp_dir().join(format!(
            "holdfast-chaos-html-{}-{tag}.svg",
            std::process::id()
        ));
        std::fs::write(&path, svg).ok()?;
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys,xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_file(&path);
        let available = std::process::Command::new("python3")
            .arg("-c")
            .arg("import xml.dom.minidom")
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            return None;
        }
        Some(status.is_ok_and(|s| s.success()))
    }

    fn assert_svg_well_formed(svg: &str, tag: &str) {
        assert!(svg.starts_with("<svg "), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(svg, "<svg"), 1);
        assert_eq!(count(svg, "<g>") + count(svg, "<g "), count(svg, "</g>"));
        assert_eq!(count(svg, "<text"), count(svg, "</text>"));
        assert_eq!(count(svg, "<title"), count(svg, "</title>"));
        assert_eq!(count(svg, "<"), count(svg, ">"), "angle brackets balance");
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(&format!("\"{bad}")), "{bad} in an attribute");
        }
        if let Some(ok) = python_parses(svg, tag) {
            assert!(ok, "python's XML parser rejects the SVG ({tag})");
        }
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let r = sample();
        let svg = render_svg(&r);
        assert_svg_well_formed(&svg, "sample");
        assert!(!svg.contains("<redis"));
        assert!(svg.contains("&lt;redis &amp; &quot;co&quot;&gt;"));
        assert!(svg.contains("&#39;x&#39;"), "event tooltip escaped");
        assert!(svg.contains("FAILED"));
        assert!(svg.contains("recovered in 3.5 s"));
        assert!(svg.contains("jobs"));
        assert!(svg.contains("latency 50ms"));
        assert_eq!(count(&svg, "http://"), 1, "only the xmlns");
        assert!(!svg.contains("https://"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn page_has_everything_and_no_external_url() {
        let r = sample();
        let page = render_html(&r);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</html>"));
        for name in ["accepted_jobs_lost", "recovery_seconds"] {
            assert!(page.contains(name), "{name}");
        }
        assert!(page.contains("FAILED"));
        assert!(page.contains("verdict fail"));
        assert!(page.contains("1 of 2 invariants broken"));
        assert!(page.contains("2026-01-01 00:00:00 UTC"));
        assert!(page.contains("<svg "));
        assert!(page.contains("<details>"));
        assert!(page.contains("&quot;started_at_unix_ms&quot;: 1767225600123"));
        assert!(page.contains("≤ 3 s"));
        assert!(page.contains("✗") && page.contains("✓"));
        assert!(page.contains("end of run"));
        assert!(page.contains("kill -9 redis"));
        assert!(!page.contains("<redis"));
        assert_eq!(count(&page, "http://"), 1, "only the SVG xmlns");
        assert!(!page.contains("https://"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("<link"));
        assert!(!page.contains("src="));
        assert_eq!(count(&page, "<table"), count(&page, "</table>"));
        assert_eq!(count(&page, "<tr"), count(&page, "</tr>"));
        assert_eq!(count(&page, "<td"), count(&page, "</td>"));
    }

    #[test]
    fn urls_in_targets_are_text_not_resources() {
        let mut r = sample();
        r.loads[0].target = "GET http://127.0.0.1:8080/v1/calls?a=1&b=<2>".to_string();
        let page = render_html(&r);
        assert!(page.contains("GET http://127.0.0.1:8080/v1/calls?a=1&amp;b=&lt;2&gt;"));
        assert!(!page.contains("href="));
        assert!(!page.contains("src="));
    }

    #[test]
    fn passed_page_is_green() {
        let mut r = sample();
        r.passed = true;
        for i in &mut r.invariants {
            i.ok = true;
        }
        let page = render_html(&r);
        assert!(page.contains("verdict pass"));
        assert!(page.contains("all 2 invariants held"));
        assert!(!page.contains("FAILED"));
        assert!(render_svg(&r).contains("PASSED"));
    }

    #[test]
    fn degenerate_reports_do_not_panic() {
        let mut empty = sample();
        empty.loads.clear();
        empty.events.clear();
        empty.faults.clear();
        empty.invariants.clear();
        empty.duration_s = 0.0;
        empty.scenario = String::new();
        empty.description = String::new();
        assert_svg_well_formed(&render_svg(&empty), "empty");
        let page = render_html(&empty);
        assert!(page.contains("no invariant was checked"));
        assert!(page.contains("No load ran."));

        let mut weird = sample();
        weird.duration_s = f64::NAN;
        weird.started_at_unix_ms = u64::MAX;
        weird.scenario = "ctl\u{1}\u{0}chars ]]> --".to_string();
        weird.loads[0].timeline.clear();
        weird.loads[1].rps = f64::INFINITY;
        weird.loads[1].p50_ms = f64::NAN;
        for (i, p) in weird.loads[1].timeline.iter_mut().enumerate() {
            // All errors, latency of every kind of broken.
            p.ok = 0;
            p.errors = p.requests.max(1);
            p.p99_ms = match i % 5 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -3.0,
                3 => 0.0,
                _ => 1e12,
            };
        }
        weird.loads[1].timeline.swap(0, 7);
        weird.loads[1].timeline.remove(15);
        weird.faults.push(FaultWindow {
            name: "backwards".to_string(),
            kind: "k".to_string(),
            start_s: 50.0,
            end_s: Some(-1.0),
            recovery_s: Some(f64::NAN),
        });
        weird.faults.push(FaultWindow {
            name: "nan".to_string(),
            kind: "k".to_string(),
            start_s: f64::NAN,
            end_s: Some(f64::INFINITY),
            recovery_s: Some(f64::INFINITY),
        });
        weird.events.push(Event {
            at_s: f64::NEG_INFINITY,
            source: String::new(),
            what: String::new(),
        });
        weird.invariants[0].value = f64::NAN;
        let svg = render_svg(&weird);
        assert_svg_well_formed(&svg, "weird");
        assert!(!svg.contains('\u{1}'));
        let page = render_html(&weird);
        assert!(page.contains("n/a"));

        // One load, one second, zero duration, many faults and events at once.
        let mut tiny = sample();
        tiny.duration_s = 0.0;
        tiny.loads.truncate(1);
        tiny.loads[0].timeline.truncate(1);
        for k in 0..12 {
            tiny.faults.push(FaultWindow {
                name: format!("fault {k}"),
                kind: "k".to_string(),
                start_s: 0.0,
                end_s: Some(0.5),
                recovery_s: Some(0.2),
            });
            tiny.events.push(Event {
                at_s: 0.5,
                source: "s".to_string(),
                what: format!("e{k}"),
            });
        }
        assert_svg_well_formed(&render_svg(&tiny), "tiny");
        let _ = render_html(&tiny);

        // A long run: ticks and hover columns stay bounded.
        let mut long = sample();
        long.duration_s = 7200.0;
        long.loads[0].timeline = (0..7200)
            .map(|s| SecondPoint {
                second: s,
                requests: 10,
                ok: 10,
                errors: 0,
                p99_ms: if s == 4000 { 1e6 } else { 5.0 + (s % 7) as f64 },
            })
            .collect();
        let svg = render_svg(&long);
        assert_svg_well_formed(&svg, "long");
        assert!(
            svg.contains("p99 1000 s at 4000 s (above the axis)"),
            "outlier clipped and marked"
        );
        assert!(count(&svg, "<text") < 200);
    }

    #[test]
    fn small_helpers() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_767_225_599_999), "2025-12-31 23:59:59 UTC");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(3.456), "3.46");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.0), 5.0);
        assert_eq!(nice_ceil(120.0), 200.0);
        assert_eq!(
            esc("<a & 'b' \"c\">"),
            "&lt;a &amp; &#39;b&#39; &quot;c&quot;&gt;"
        );
        assert_eq!(duration_text(125.0), "125 s (2 min 5 s)");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
