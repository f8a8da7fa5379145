//! The events on the chart: a thin dashed line over both panels at each
//! event, with `#n at t s, source: what` as its tooltip, and its number
//! (as in the page's table of events) under the time axis where there is
//! room for it.

use super::CHAR_W;
use super::scale::TimeScale;
use crate::report::RunReport;
use crate::report_page::text::{Px, num};

/// One event's marker.
pub(super) struct Marker {
    pub(super) x: Px,
    pub(super) tip: String,
    /// Its number, unless the one before is too close to print it.
    pub(super) number: Option<usize>,
}

/// The markers of the events within the run, in the report's order.
pub(super) fn of(report: &RunReport, time: &TimeScale) -> Vec<Marker> {
    let mut markers = Vec::new();
    let mut last_label_x = f64::NEG_INFINITY;
    for (n, e) in report.events.iter().enumerate() {
        if !e.at_s.is_finite() || e.at_s < 0.0 || e.at_s > time.x_max {
            continue;
        }
        let x = time.x(e.at_s);
        let number = n + 1;
        let half = number.to_string().len() as f64 * CHAR_W / 2.0 + 3.0;
        let labelled = x - half >= last_label_x + 2.0;
        if labelled {
            last_label_x = x + half;
        }
        markers.push(Marker {
            x: Px(x),
            tip: format!("#{number} at {} s, {}: {}", num(e.at_s), e.source, e.what),
            number: labelled.then_some(number),
        });
    }
    markers
}
