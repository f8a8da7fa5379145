//! The figures of each topic partition: length, lag, pending, consumers,
//! dead letters and the age of the oldest pending entry.

use holdfast_core::{Keys, metric_names as names};
use holdfast_redis::redis::Value;
use holdfast_streams::value;
use holdfast_telemetry::exposition::{Exposition, MetricKind as Kind};

use super::families::help;
use super::scrape::{id_ms, non_negative, text_of};

/// One topic partition found in Redis (or named on the command line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Partition {
    /// As found in the key; keys written by other tools may hold any text.
    pub(super) topic: String,
    pub(super) partition: u16,
    pub(super) request_stream: String,
    pub(super) dead_letter_stream: String,
}

/// Figures of one partition; `None` where Redis did not say.
#[derive(Debug, Default)]
pub(super) struct PartitionFigures {
    length: u64,
    lag: u64,
    pending: u64,
    consumers: u64,
    dead_letters: Option<u64>,
    oldest_pending_age_seconds: f64,
}

/// `{prefix}:{topic:partition}:{kind}` for a topic name that may not be a
/// valid [`Topic`] (discovered keys are reported as found).
pub(super) fn raw_stream_key(prefix: &str, topic: &str, partition: u16, kind: &str) -> String {
    format!("{prefix}:{{{topic}:{partition}}}:{kind}")
}

/// Reads the replies of `XLEN req`, `XLEN dead`, `XINFO GROUPS`, `XPENDING`;
/// `None` when the request stream is not a stream.
pub(super) fn partition_figures(replies: &[Value], now_ms: u64) -> Option<PartitionFigures> {
    let [length, dead, groups, pending_summary] = replies else {
        return None;
    };
    let length = non_negative(length)?;
    let mut figures = PartitionFigures {
        length,
        dead_letters: non_negative(dead),
        ..PartitionFigures::default()
    };
    let group = match groups {
        Value::Array(items) => items
            .iter()
            .find(|g| value::field(g, "name").and_then(text_of).as_deref() == Some(Keys::GROUP)),
        _ => None,
    };
    let Some(group) = group else {
        // No workers yet: everything is waiting.
        figures.lag = length;
        return Some(figures);
    };
    figures.pending = value::field(group, "pending")
        .and_then(non_negative)
        .unwrap_or(0);
    // `lag` is nil when Redis cannot compute it (after deletions); the
    // length minus pending is then the safe, larger estimate.
    figures.lag = value::field(group, "lag")
        .and_then(non_negative)
        .unwrap_or(length.saturating_sub(figures.pending));
    figures.consumers = value::field(group, "consumers")
        .and_then(non_negative)
        .unwrap_or(0);
    if figures.pending > 0
        && let Value::Array(parts) = pending_summary
        && let Some(oldest_ms) = parts.get(1).and_then(text_of).and_then(|id| id_ms(&id))
    {
        figures.oldest_pending_age_seconds = now_ms.saturating_sub(oldest_ms) as f64 / 1000.0;
    }
    Some(figures)
}

pub(super) fn render_topics(out: &mut Exposition, topics: &[(Partition, PartitionFigures)]) {
    if topics.is_empty() {
        return;
    }
    type Figure = fn(&PartitionFigures) -> Option<f64>;
    let families: [(&str, Figure); 6] = [
        (names::EXPORTER_TOPIC_LENGTH, |f| Some(f.length as f64)),
        (names::EXPORTER_TOPIC_LAG, |f| Some(f.lag as f64)),
        (names::EXPORTER_TOPIC_PENDING, |f| Some(f.pending as f64)),
        (names::EXPORTER_TOPIC_CONSUMERS, |f| {
            Some(f.consumers as f64)
        }),
        (names::EXPORTER_TOPIC_DEAD_LETTERS, |f| {
            f.dead_letters.map(|d| d as f64)
        }),
        (names::EXPORTER_TOPIC_OLDEST_PENDING_AGE, |f| {
            Some(f.oldest_pending_age_seconds)
        }),
    ];
    for (name, figure) in families {
        out.family(name, Kind::Gauge, help(name));
        for (p, figures) in topics {
            if let Some(v) = figure(figures) {
                let partition = p.partition.to_string();
                out.sample(
                    name,
                    "",
                    [
                        ("topic", p.topic.as_str()),
                        ("partition", partition.as_str()),
                    ],
                    v,
                );
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_replies_give_no_figures_rather_than_a_panic() {
        assert!(partition_figures(&[Value::Nil, Value::Nil, Value::Nil, Value::Nil], 0).is_none());
        assert!(partition_figures(&[], 0).is_none());
        let figures =
            partition_figures(&[Value::Int(4), Value::Nil, Value::Nil, Value::Nil], 0).unwrap();
        assert_eq!(
            (figures.length, figures.lag, figures.dead_letters),
            (4, 4, None)
        );
    }
}
