//! The progress bar: requests done, current rate, errors and p99, redrawn
//! four times a second on stderr.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::timeline::Timeline;

/// A slot's running totals, written by that slot only (plain stores, no
/// read-modify-write) and read by the progress bar. Padded to its own cache
/// lines so slots on different cores do not slow each other down.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct SlotCounters {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// Starts the bar, or nothing when stderr is not a terminal. The task ends
/// when `finished` is cancelled (at the end of the run).
pub(crate) fn spawn(
    expected_requests: Option<u64>,
    duration: Option<Duration>,
    counters: Arc<[SlotCounters]>,
    timeline: Arc<Timeline>,
    finished: CancellationToken,
) -> Option<JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let target = ProgressDrawTarget::stderr_with_hz(4);
    let bar = match expected_requests {
        Some(total) => {
            let bar = ProgressBar::with_draw_target(Some(total), target);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .expect("constant template is valid")
                    .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, target);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise}/{prefix} {pos} requests {msg}",
                )
                .expect("constant template is valid"),
            );
            bar.set_prefix(match duration {
                Some(duration) => format!("{duration:?}"),
                None => "until cancelled".to_owned(),
            });
            bar
        }
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_done = 0;
        let mut last_at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = finished.cancelled() => break,
            }
            let done: u64 = counters
                .iter()
                .map(|c| c.done.load(Ordering::Relaxed))
                .sum();
            let errors: u64 = counters
                .iter()
                .map(|c| c.errors.load(Ordering::Relaxed))
                .sum();
            let now = tokio::time::Instant::now();
            let rate =
                (done - last_done) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-3);
            (last_done, last_at) = (done, now);
            bar.set_position(done);
            bar.set_message(format!(
                "{rate:.0} req/s, {errors} errors, p99 {:.2} ms",
                timeline.p99_so_far_ms()
            ));
        }
        bar.finish_and_clear();
    }))
}
