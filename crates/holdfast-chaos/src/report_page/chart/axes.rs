//! The axes: a horizontal grid line and a label at each tick of the two
//! panels' scales, and the ticks and labels of the time axis under them.
//! (The frames and titles, which only need the panels, are in the
//! template.)

use super::scale::{CountScale, LatencyScale, TimeScale};
use crate::report_page::text::{Px, ms_label, num};

/// A tick of a vertical scale: where its grid line runs and its label.
pub(super) struct YTick {
    pub(super) y: Px,
    pub(super) label: String,
}

/// The ticks of the top panel (answers per second), then of the bottom
/// one (latency).
pub(super) fn y_ticks(counts: &CountScale, latency: &LatencyScale) -> Vec<YTick> {
    let count_ticks = counts.ticks().into_iter().map(|t| YTick {
        y: Px(counts.y(t)),
        label: num(t),
    });
    let latency_ticks = latency.ticks().into_iter().map(|v| YTick {
        y: Px(latency.y(v)),
        label: ms_label(v),
    });
    count_ticks.chain(latency_ticks).collect()
}

/// A tick of the time axis.
pub(super) struct XTick {
    pub(super) x: Px,
    pub(super) label: String,
}

/// The ticks of the time axis.
pub(super) fn x_ticks(time: &TimeScale) -> Vec<XTick> {
    time.ticks()
        .into_iter()
        .map(|t| XTick {
            x: Px(time.x(t)),
            label: num(t),
        })
        .collect()
}
