//! The self-contained HTML page and SVG chart of a run report, rendered by
//! templates (`templates/report.html`, `templates/chart.svg`) whose engine
//! escapes everything they print.
//!
//! [`render_svg`] draws the run's timeline (see the `chart` module for what it
//! shows and how its parts are laid out). [`render_html`] wraps that chart
//! in one page with no external resource and no script: verdict, scenario,
//! start time, the tables of invariants, faults, loads and events, and the
//! report's JSON in a `<details>` block.
//!
//! Every text that comes from the report is escaped by the engine (with
//! `text::Xml`, which also drops the characters XML does not allow), and
//! non-finite numbers (NaN, infinities) are drawn as gaps and printed as
//! `n/a`, so no report can make the output invalid.

mod chart;
mod text;

use askama::Template;

use self::chart::{Chart, load_colour};
use self::text::{duration_text, num, secs, utc_text, with_unit};
use crate::report::{Compare, Event, FaultWindow, InvariantResult, LoadSeries, RunReport};

/// The chart alone: an SVG document (for the README and the page).
pub fn render_svg(report: &RunReport) -> String {
    Chart::new(report).to_string()
}

/// A live chart in the same drawing (the dashboard's): the loads of
/// `report` as its series, its faults as bands, its events as markers; no
/// verdict, `subtitle` at the top right, `top_axis` as the top panel's
/// axis title, and ids prefixed with `id_prefix` so that several charts fit
/// in one page.
pub fn render_live_svg(
    report: &RunReport,
    id_prefix: &str,
    subtitle: String,
    top_axis: &'static str,
) -> String {
    Chart::live(report, id_prefix, subtitle, top_axis).to_string()
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
    Page::new(report).to_string()
}

/// The page, ready for its template.
#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    verdict: &'static str,
    passed: bool,
    short: bool,
    scenario: &'a str,
    description: &'a str,
    summary: String,
    started: String,
    duration: String,
    chart: Chart,
    invariants: Vec<InvariantRow<'a>>,
    faults: Vec<FaultRow<'a>>,
    loads: Vec<LoadRow<'a>>,
    events: Vec<EventRow<'a>>,
    json: String,
}

struct InvariantRow<'a> {
    ok: bool,
    name: &'a str,
    value: String,
    compare: &'static str,
    limit: String,
    detail: &'a str,
}

struct FaultRow<'a> {
    name: &'a str,
    kind: &'a str,
    start: String,
    end: String,
    recovery: String,
}

struct LoadRow<'a> {
    colour: &'static str,
    name: &'a str,
    target: &'a str,
    requests: u64,
    ok: u64,
    errors: u64,
    /// ` (12 %)` of the requests, or nothing without requests.
    error_share: String,
    rps: String,
    p50: String,
    p99: String,
    max: String,
}

struct EventRow<'a> {
    number: usize,
    at: String,
    source: &'a str,
    what: &'a str,
}

impl<'a> Page<'a> {
    fn new(report: &'a RunReport) -> Self {
        let broken = report.invariants.iter().filter(|i| !i.ok).count();
        let total = report.invariants.len();
        let summary = if total == 0 {
            "no invariant was checked".to_string()
        } else if broken == 0 {
            format!("all {total} invariants held")
        } else {
            format!("{broken} of {total} invariants broken")
        };
        Self {
            verdict: if report.passed { "PASSED" } else { "FAILED" },
            passed: report.passed,
            short: report.short,
            scenario: &report.scenario,
            description: &report.description,
            summary,
            started: utc_text(report.started_at_unix_ms),
            duration: duration_text(report.duration_s),
            chart: Chart::new(report),
            invariants: report.invariants.iter().map(InvariantRow::new).collect(),
            faults: report.faults.iter().map(FaultRow::new).collect(),
            loads: report.loads.iter().enumerate().map(LoadRow::new).collect(),
            events: report
                .events
                .iter()
                .enumerate()
                .map(EventRow::new)
                .collect(),
            json: serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("report could not be written as JSON: {e}")),
        }
    }
}

impl<'a> InvariantRow<'a> {
    fn new(inv: &'a InvariantResult) -> Self {
        InvariantRow {
            ok: inv.ok,
            name: &inv.name,
            value: with_unit(inv.value, &inv.unit),
            compare: match inv.compare {
                Compare::AtMost => "≤",
                Compare::AtLeast => "≥",
            },
            limit: with_unit(inv.limit, &inv.unit),
            detail: &inv.detail,
        }
    }
}

impl<'a> FaultRow<'a> {
    fn new(f: &'a FaultWindow) -> Self {
        FaultRow {
            name: &f.name,
            kind: &f.kind,
            start: num(f.start_s),
            end: secs(f.end_s, "end of run"),
            recovery: secs(f.recovery_s, "—"),
        }
    }
}

impl<'a> LoadRow<'a> {
    /// The `i`-th load, in the colour of its line on the chart.
    fn new((i, l): (usize, &'a LoadSeries)) -> Self {
        LoadRow {
            colour: load_colour(i),
            name: &l.name,
            target: &l.target,
            requests: l.requests,
            ok: l.ok,
            errors: l.errors,
            error_share: if l.requests > 0 {
                format!(" ({} %)", num(l.errors as f64 * 100.0 / l.requests as f64))
            } else {
                String::new()
            },
            rps: num(l.rps),
            p50: num(l.p50_ms),
            p99: num(l.p99_ms),
            max: num(l.max_ms),
        }
    }
}

impl<'a> EventRow<'a> {
    /// The `n`-th event, numbered from 1 as on the chart's markers.
    fn new((n, e): (usize, &'a Event)) -> Self {
        EventRow {
            number: n + 1,
            at: num(e.at_s),
            source: &e.source,
            what: &e.what,
        }
    }
}

#[cfg(test)]
mod tests;
