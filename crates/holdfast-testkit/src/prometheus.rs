//! Reading Prometheus text in tests: the value of one sample, and the
//! whole exposition checked by a real parser.
//!
//! The reference parser is the one of Python's `prometheus_client`, run as
//! `python3`. Where it is missing the check is skipped with a note, except
//! under `CI=true`, where a missing parser fails the test (`./dev test`
//! installs it).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// The value of the sample line `series` in `text`: name and labels
/// exactly as rendered (`name{a="1",b="2"}`), or the bare name.
///
/// # Panics
/// If the line is there but its value is not a number.
pub fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{series} has the value {value:?}, not a number"))
        })
}

/// The value of the first sample named `name` that carries every label of
/// `labels`, whatever their order and whatever other labels it has.
pub fn value_with_labels(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let present: Vec<(&str, &str)> = rest
            .split(',')
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|want| present.contains(want))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// One sample as the reference parser read it.
#[derive(Debug, serde::Deserialize)]
pub struct ParsedSample {
    /// The metric family the sample belongs to (`x` for `x_bucket`).
    pub family: String,
    /// The family's type: `counter`, `gauge`, `histogram`, `summary`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The family's help text, unescaped.
    pub help: String,
    /// The sample's own name.
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value as Python's `repr` wrote it (`2.0`, `+Inf`, `nan`).
    pub value: String,
}

const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "help": family.documentation,
                    "name": s.name, "labels": s.labels, "value": repr(s.value)})
print(json.dumps(out))
"#;

/// Parses `text` with Python's `prometheus_client` parser and returns its
/// samples, or `None` (with a note) when the parser is not installed. Under
/// `CI=true` a missing parser fails the test instead.
///
/// # Panics
/// When the parser rejects the text (the message shows the text), or is
/// missing under `CI=true`.
pub fn parse_with_prometheus_client(text: &str) -> Option<Vec<ParsedSample>> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(PARSER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return missing_parser(&format!("python3 did not start: {error}")),
    };
    // A parser that is missing exits before it reads: the pipe then breaks,
    // and the exit code below says why.
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes());
    let output = child.wait_with_output().expect("python output");
    if let Err(error) = written
        && output.status.code() != Some(3)
    {
        panic!("write to python: {error}");
    }
    if output.status.code() == Some(3) {
        return missing_parser("the python module prometheus_client is not importable");
    }
    assert!(
        output.status.success(),
        "the Prometheus text parser rejected the exposition: {}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("parser output is JSON"))
}

fn missing_parser(why: &str) -> Option<Vec<ParsedSample>> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the Prometheus text parser is required under CI=true: {why}");
    }
    eprintln!("note: Prometheus parser check skipped: {why} (pip install prometheus_client)");
    None
}

#[cfg(test)]
mod tests {
    use super::{value_of, value_with_labels};

    const TEXT: &str = "# HELP a_total A.\n\
                        # TYPE a_total counter\n\
                        a_total{x=\"1\",y=\"2\"} 3\n\
                        a_total{x=\"4\"} 5\n\
                        up 1\n";

    #[test]
    fn a_series_is_found_as_rendered_and_only_so() {
        assert_eq!(value_of(TEXT, "a_total{x=\"1\",y=\"2\"}"), Some(3.0));
        assert_eq!(value_of(TEXT, "up"), Some(1.0));
        assert_eq!(value_of(TEXT, "a_total{y=\"2\",x=\"1\"}"), None);
        assert_eq!(value_of(TEXT, "a_total"), None);
    }

    #[test]
    fn labels_match_in_any_order_and_as_a_subset() {
        assert_eq!(
            value_with_labels(TEXT, "a_total", &[("y", "2"), ("x", "1")]),
            Some(3.0)
        );
        assert_eq!(value_with_labels(TEXT, "a_total", &[("x", "4")]), Some(5.0));
        assert_eq!(value_with_labels(TEXT, "a_total", &[("x", "9")]), None);
        assert_eq!(value_with_labels(TEXT, "up", &[]), Some(1.0));
    }
}
