//! The last lines this process logged, kept in memory for its admin
//! `/logs` endpoint, so a person (or the dashboard) can see what one
//! instance said without reaching its log collector.
//!
//! [`RecentLogsLayer`] is a `tracing` layer installed beside the writer by
//! [`crate::init_tracing`]; it keeps the last [`CAPACITY`] events that pass
//! the process's log filter in a ring buffer ([`RecentLogs`]), oldest first.
//! Memory is bounded: each line keeps at most [`MAX_LINE`] bytes of text.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept per process.
pub const CAPACITY: usize = 500;

/// Bytes of message and fields kept per line; the rest is cut at a
/// character boundary and marked with `…`.
pub const MAX_LINE: usize = 2048;

/// One logged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// When it was logged, in unix milliseconds.
    pub at_unix_ms: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The message, then its fields as `name=value`.
    pub text: String,
}

/// The ring of recent lines; clones share it.
#[derive(Clone, Debug, Default)]
pub struct RecentLogs {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
}

impl RecentLogs {
    /// Adds a line, dropping the oldest when full.
    pub fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().expect("recent logs lock poisoned");
        if lines.len() == CAPACITY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `limit` lines at `min_level` or more severe, oldest first.
    pub fn last(&self, limit: usize, min_level: Level) -> Vec<LogLine> {
        let lines = self.lines.lock().expect("recent logs lock poisoned");
        let mut picked: Vec<LogLine> = lines
            .iter()
            .rev()
            .filter(|line| level_of(line.level) <= min_level)
            .take(limit)
            .cloned()
            .collect();
        picked.reverse();
        picked
    }
}

fn level_of(name: &str) -> Level {
    name.parse().unwrap_or(Level::TRACE)
}

/// This process's recent lines (the buffer [`crate::init_tracing`] fills).
pub fn recent_logs() -> RecentLogs {
    static RECENT: OnceLock<RecentLogs> = OnceLock::new();
    RECENT.get_or_init(RecentLogs::default).clone()
}

/// Keeps every event it sees in a [`RecentLogs`].
#[derive(Clone, Debug)]
pub struct RecentLogsLayer {
    logs: RecentLogs,
}

impl RecentLogsLayer {
    /// A layer that writes into `logs`.
    pub fn new(logs: RecentLogs) -> Self {
        Self { logs }
    }
}

impl<S: Subscriber> Layer<S> for RecentLogsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = LineText::default();
        event.record(&mut text);
        let meta = event.metadata();
        self.logs.push(LogLine {
            at_unix_ms: holdfast_core::Deadline::now_unix_ms(),
            level: level_name(*meta.level()),
            target: meta.target().to_owned(),
            text: text.finish(),
        });
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The message first, then the other fields, bounded by [`MAX_LINE`].
#[derive(Default)]
struct LineText {
    message: String,
    fields: String,
}

impl LineText {
    fn finish(self) -> String {
        let mut text = self.message;
        if !self.fields.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&self.fields);
        }
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

impl Visit for LineText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Past the bound nothing more would be kept: stop formatting.
        if self.message.len() + self.fields.len() > MAX_LINE {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn logged(logs: &RecentLogs, emit: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(RecentLogsLayer::new(logs.clone()));
        tracing::subscriber::with_default(subscriber, emit);
    }

    #[test]
    fn events_are_kept_with_level_target_message_and_fields() {
        let logs = RecentLogs::default();
        logged(&logs, || {
            tracing::info!(topic = "weather", "worker started");
            tracing::warn!("redis is reconnecting");
        });
        let lines = logs.last(10, Level::TRACE);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].level, "info");
        assert_eq!(lines[0].text, "worker started topic=\"weather\"");
        assert!(lines[0].target.contains("recent_logs"), "{:?}", lines[0]);
        assert_eq!(lines[1].level, "warn");
        assert_eq!(lines[1].text, "redis is reconnecting");
    }

    #[test]
    fn only_the_last_lines_are_kept_and_a_level_filters_them() {
        let logs = RecentLogs::default();
        logged(&logs, || {
            for i in 0..CAPACITY + 10 {
                tracing::info!("line {i}");
            }
            tracing::error!("the last one");
        });
        let all = logs.last(usize::MAX, Level::TRACE);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].text, "line 11");
        assert_eq!(all.last().map(|l| l.text.as_str()), Some("the last one"));
        let errors = logs.last(usize::MAX, Level::ERROR);
        assert_eq!(errors.len(), 1);
        assert_eq!(logs.last(3, Level::INFO).len(), 3);
    }

    #[test]
    fn a_long_line_is_cut_at_the_bound() {
        let logs = RecentLogs::default();
        let long = "é".repeat(MAX_LINE);
        logged(&logs, || tracing::info!(value = %long, "big"));
        let line = &logs.last(1, Level::TRACE)[0];
        assert!(
            line.text.len() <= MAX_LINE + '…'.len_utf8(),
            "{}",
            line.text.len()
        );
        assert!(line.text.ends_with('…'));
    }
}
