//! The chart of a run: an SVG document, drawn by the `chart.svg` template
//! from what these modules compute.
//!
//! About 960×420 (taller when the legend or the fault labels need more
//! rows), on a white background so it reads the same in light and dark
//! viewers. Time runs left to right in seconds since the start of the run.
//! The top panel shows answers below 400 per second of each load as a
//! coloured line and errors per second as red bars stacked by load; the
//! bottom panel shows each load's p99 latency per second on a log scale
//! topped at the 99th percentile of those points (points above it are drawn
//! on the top edge with a triangle). Fault windows are grey bands labelled
//! with the fault's name, the recovery after a fault is hatched and
//! bracketed "recovered in X s", events are dashed markers numbered as in
//! the page's table, with `source: what` as tooltip.
//!
//! The parts, in the order they are worked out: [`series`] (the loads'
//! points), [`scale`] (time, counts, latency), [`legend`], [`bands`] (the
//! faults, whose labels take rows), then the vertical [`Layout`], the
//! [`axes`], the data and the [`markers`] of events.

mod axes;
mod bands;
mod legend;
mod markers;
pub(crate) mod scale;
mod series;

use askama::Template;

use self::axes::{XTick, YTick};
use self::bands::{Band, Bracket, Name};
use self::legend::{Entry, Swatch};
use self::markers::Marker;
use self::scale::{CountScale, LatencyScale, PLOT_WIDTH, TimeScale};
use self::series::{Bar, Clipped, Hover, Line};
use super::text::{Px, duration_text, truncate};
use crate::report::RunReport;

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
/// Least height of the chart.
const MIN_HEIGHT: f64 = 420.0;
/// Height of one row of fault labels or recovery brackets.
const ROW_H: f64 = 14.0;
/// Most rows of fault labels or recovery brackets; later ones get tooltips only.
const MAX_ROWS: usize = 3;
/// Rough width of one character at 11px, for laying out labels.
const CHAR_W: f64 = 6.2;

/// Line colours of the loads (no red: red is for errors).
const LOAD_COLOURS: [&str; 7] = [
    "#1f6fd1", "#e08a00", "#7b3fbf", "#138a72", "#8c564b", "#d4379b", "#5f6b7a",
];
/// Fills of the error bars, one shade of red per load.
const ERROR_COLOURS: [&str; 4] = ["#d62728", "#ff9896", "#a50f15", "#fb6a4a"];

/// The colour of load `i`'s line (and its swatch in the page's table).
pub(crate) fn load_colour(i: usize) -> &'static str {
    LOAD_COLOURS[i % LOAD_COLOURS.len()]
}

fn error_colour(i: usize) -> &'static str {
    ERROR_COLOURS[i % ERROR_COLOURS.len()]
}

/// One of the two panels: where it starts and how tall it is.
#[derive(Clone, Copy)]
struct Panel {
    top: f64,
    height: f64,
}

impl Panel {
    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    fn y(&self) -> Px {
        Px(self.top)
    }

    fn h(&self) -> Px {
        Px(self.height)
    }

    fn end(&self) -> Px {
        Px(self.bottom())
    }

    fn middle(&self) -> Px {
        Px(self.top + self.height / 2.0)
    }
}

/// Where everything goes vertically, from the title down: the legend, the
/// row of fault names, the top panel, the brackets, the bottom panel, the
/// time axis, the event numbers and the axis title.
struct Layout {
    title_y: f64,
    legend_bottom: f64,
    top: Panel,
    bottom: Panel,
    ticks_y: f64,
    events_y: f64,
    axis_title_y: f64,
    height: f64,
}

impl Layout {
    fn new(legend_rows: usize, name_rows: usize, bracket_rows: usize, has_events: bool) -> Self {
        let title_y = 24.0;
        let legend_bottom = legend::bottom(legend_rows);
        let name_strip = name_rows as f64 * ROW_H;
        let top = Panel {
            top: legend_bottom + 6.0 + name_strip,
            height: TOP_PANEL_H,
        };
        let bracket_strip = (bracket_rows.max(1) as f64) * ROW_H + 14.0;
        let bottom = Panel {
            top: top.bottom() + bracket_strip,
            height: BOTTOM_PANEL_H,
        };
        let ticks_y = bottom.bottom() + 14.0;
        let events_y = ticks_y + 16.0;
        let axis_title_y = if has_events {
            events_y + 16.0
        } else {
            ticks_y + 16.0
        };
        Self {
            title_y,
            legend_bottom,
            top,
            bottom,
            ticks_y,
            events_y,
            axis_title_y,
            height: (axis_title_y + 10.0).max(MIN_HEIGHT),
        }
    }
}

/// The chart, ready for its template.
#[derive(Template)]
#[template(path = "chart.svg")]
pub(super) struct Chart {
    width: Px,
    height: Px,
    plot_left: Px,
    plot_right: Px,
    plot_width: Px,
    plot_centre: Px,
    scenario: String,
    title: String,
    passed: bool,
    /// A live chart (the dashboard's): no verdict after the title.
    live: bool,
    /// Prefix of the SVG's ids, distinct for each chart of one page.
    id_prefix: String,
    subtitle: String,
    title_y: Px,
    legend: Vec<Entry>,
    top: Panel,
    bottom: Panel,
    /// The two panels, top first, for what both get.
    panels: [Panel; 2],
    /// The titles of the panels' vertical axes.
    axis_titles: [(&'static str, Panel); 2],
    y_ticks: Vec<YTick>,
    bands: Vec<Band>,
    names: Vec<Name>,
    brackets: Vec<Bracket>,
    error_bars: Vec<Bar>,
    lines: Vec<Line>,
    clipped: Vec<Clipped>,
    no_data: bool,
    hover: Option<Vec<Hover>>,
    markers: Vec<Marker>,
    x_ticks: Vec<XTick>,
    ticks_y: Px,
    events_y: Px,
    axis_title_y: Px,
    has_events: bool,
}

impl Chart {
    pub(super) fn new(report: &RunReport) -> Self {
        let series = series::of(report);
        let time = TimeScale::new(report.duration_s, &series);
        let (legend, legend_rows) = legend::entries(report, &series);
        let placement = bands::place(report, &time);
        let layout = Layout::new(
            legend_rows,
            placement.name_rows(),
            placement.bracket_rows(),
            !report.events.is_empty(),
        );
        let errors_at = series::errors_by_second(&series);
        let counts = CountScale::new(&series, &errors_at, layout.top);
        let latency = LatencyScale::new(&series, layout.bottom);
        let (lines, clipped) = series::lines(&series, &time, &counts, &latency, layout.bottom.top);
        let held = report.invariants.iter().filter(|i| i.ok).count();
        Self {
            width: Px(WIDTH),
            height: Px(layout.height),
            plot_left: Px(PLOT_LEFT),
            plot_right: Px(PLOT_RIGHT),
            plot_width: Px(PLOT_WIDTH),
            plot_centre: Px((PLOT_LEFT + PLOT_RIGHT) / 2.0),
            scenario: report.scenario.clone(),
            title: truncate(&report.scenario, 60),
            passed: report.passed,
            live: false,
            id_prefix: "hf".to_owned(),
            subtitle: format!(
                "{} · {held}/{} invariants held{}",
                duration_text(report.duration_s),
                report.invariants.len(),
                if report.short { " · short" } else { "" }
            ),
            title_y: Px(layout.title_y),
            legend,
            top: layout.top,
            bottom: layout.bottom,
            panels: [layout.top, layout.bottom],
            axis_titles: [
                ("ok/s · errors/s", layout.top),
                ("p99 latency (log)", layout.bottom),
            ],
            y_ticks: axes::y_ticks(&counts, &latency),
            bands: bands::bands(report, &time),
            names: placement.names(report, layout.legend_bottom),
            brackets: placement.brackets(report, layout.top.bottom()),
            error_bars: series::error_bars(&errors_at, &time, &counts),
            lines,
            clipped,
            no_data: series.iter().all(|s| s.points.is_empty()),
            hover: series::hover(&series, &time),
            markers: markers::of(report, &time),
            x_ticks: axes::x_ticks(&time),
            ticks_y: Px(layout.ticks_y),
            events_y: Px(layout.events_y),
            axis_title_y: Px(layout.axis_title_y),
            has_events: !report.events.is_empty(),
        }
    }

    /// The chart as the dashboard draws it live: no verdict, `subtitle` in
    /// place of the invariants, `top_axis` as the top panel's axis title,
    /// ids prefixed with `id_prefix`.
    pub(super) fn live(
        report: &RunReport,
        id_prefix: &str,
        subtitle: String,
        top_axis: &'static str,
    ) -> Self {
        let mut chart = Self::new(report);
        chart.live = true;
        id_prefix.clone_into(&mut chart.id_prefix);
        chart.subtitle = subtitle;
        chart.axis_titles[0].0 = top_axis;
        chart
    }

    fn verdict(&self) -> &'static str {
        if self.passed { "PASSED" } else { "FAILED" }
    }

    /// From the top panel's top to the bottom panel's bottom.
    fn plot_height(&self) -> Px {
        Px(self.bottom.bottom() - self.top.top)
    }
}
