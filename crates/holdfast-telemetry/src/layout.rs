//! The Redis key layout shared by the sink (writer) and the aggregate
//! reader, and the label-set encoding used in hash fields.
//!
//! With prefix `P` (default `hf`):
//!
//! | key                      | type   | fields → values                                   | TTL |
//! |--------------------------|--------|---------------------------------------------------|-----|
//! | `P:{metrics}:c:{name}`     | hash   | `{labels}` → counter total (`HINCRBY`)            | `ttl`, refreshed by every flush |
//! | `P:{metrics}:h:{name}`     | hash   | `{le}\|{labels}` → count in that bucket (non-cumulative; `le` is `0.005`, …, `+Inf`), `count\|{labels}`, `sum\|{labels}` (`HINCRBYFLOAT`) | `ttl` |
//! | `P:{metrics}:g:{instance}` | hash   | `{name}{{labels}}` → current gauge value (`HSET`, whole hash replaced per flush) | `gauge_ttl` |
//! | `P:{metrics}:help`         | hash   | `{name}` → help text                              | `ttl` |
//! | `P:{metrics}:seq:{instance}` | string | `{epoch}:{seq}` of the last applied flush      | `ttl` |
//!
//! `{labels}` is the label set in Prometheus form, sorted by label name,
//! values escaped: `outcome="ok",topic="orders"` (empty without labels).
//! Counters and histograms of every instance add into the same fields, so
//! Redis already holds the sum over instances; gauges stay per instance.

pub(crate) use crate::exposition::format_value;
use crate::exposition::write_labels;

/// `P:{metrics}:` for a prefix.
pub(crate) fn root(prefix: &str) -> String {
    format!("{prefix}:{{metrics}}:")
}

pub(crate) fn counter_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:{{metrics}}:c:{name}")
}

pub(crate) fn histogram_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:{{metrics}}:h:{name}")
}

pub(crate) fn gauge_key(prefix: &str, instance: &str) -> String {
    format!("{prefix}:{{metrics}}:g:{instance}")
}

pub(crate) fn help_key(prefix: &str) -> String {
    format!("{prefix}:{{metrics}}:help")
}

pub(crate) fn seq_key(prefix: &str, instance: &str) -> String {
    format!("{prefix}:{{metrics}}:seq:{instance}")
}

/// Renders label pairs as `a="x",b="y"` (in the given order), escaped as
/// in the exposition format, so a hash field reads back as Prometheus text.
pub(crate) fn encode_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    write_labels(labels, &mut out);
    out
}

/// Encodes the labels of a `metrics` key, sorted by label name so that the
/// same label set always lands in the same hash field.
pub(crate) fn encode_key_labels(key: &metrics::Key) -> String {
    let mut labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    labels.sort_unstable();
    encode_labels(labels)
}

/// Whether `name` is a valid Prometheus metric name.
pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `a="x",b="y"` back into pairs (values unescaped); `None` when the
/// text is not a well-formed label set.
pub(crate) fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        if !is_label_name(name) {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            if next.is_empty() {
                return None;
            }
            rest = next;
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(labels)
}

/// Parses a number written by [`format_value`] or by Redis.
pub(crate) fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_survive_encoding_and_parsing() {
        let nasty = "a \"quoted\" back\\slash\nnewline, comma=\"x\"";
        let encoded = encode_labels([("path", nasty), ("z", "")]);
        assert_eq!(
            encoded,
            r#"path="a \"quoted\" back\\slash\nnewline, comma=\"x\"",z="""#
        );
        let parsed = parse_labels(&encoded).expect("parses");
        assert_eq!(parsed[0], ("path".to_owned(), nasty.to_owned()));
        assert_eq!(parsed[1], ("z".to_owned(), String::new()));
        assert_eq!(parse_labels(""), Some(vec![]));
    }

    #[test]
    fn garbled_label_sets_are_rejected() {
        for bad in [
            "a",
            "a=\"x",
            "a=\"x\"b=\"y\"",
            "a=\"x\",",
            "1a=\"x\"",
            "a=\"\\q\"",
        ] {
            assert_eq!(parse_labels(bad), None, "{bad}");
        }
    }
}
