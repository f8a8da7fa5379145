//! The one Prometheus text writer (exposition format 0.0.4) of the
//! workspace: every role's `/metrics`, the exporter's merged endpoint and
//! its Redis and stream figures are written through [`Exposition`], so
//! escaping and number formatting cannot drift between them.
//!
//! The writer appends to one `String` and allocates nothing per sample:
//! label values are escaped straight into the output.

use std::fmt::Write as _;

/// The content type of Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The `# TYPE` of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing total.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl MetricKind {
    /// The word Prometheus reads after `# TYPE name`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Prometheus text, written family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A writer whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
        }
    }

    /// The `# HELP` (when there is a help text) and `# TYPE` lines that open
    /// a family.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: Option<&str>) {
        if let Some(help) = help {
            self.text.push_str("# HELP ");
            self.text.push_str(name);
            self.text.push(' ');
            escape_help(help, &mut self.text);
            self.text.push('\n');
        }
        self.text.push_str("# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind.as_str());
        self.text.push('\n');
    }

    /// One sample line: `name` + `suffix` (`_bucket`, `_sum`, `_count` or
    /// empty), the labels in the order given, and the value.
    pub fn sample<'a>(
        &mut self,
        name: &str,
        suffix: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) {
        self.text.push_str(name);
        self.text.push_str(suffix);
        let mut labels = labels.into_iter().peekable();
        if labels.peek().is_some() {
            self.text.push('{');
            write_labels(labels, &mut self.text);
            self.text.push('}');
        }
        self.text.push(' ');
        format_value(value, &mut self.text);
        self.text.push('\n');
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: MetricKind, help: Option<&str>, value: f64) {
        self.family(name, kind, help);
        self.sample(name, "", [], value);
    }

    /// Appends text that is already in exposition format (another
    /// writer's output).
    pub fn push_text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// Writes label pairs as `a="x",b="y"` (in the given order), values
/// escaped.
pub fn write_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, out: &mut String) {
    for (i, (name, value)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, out);
        out.push('"');
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a help text: backslash and newline.
pub fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a sample value as Prometheus reads it: `NaN`, `+Inf`, `-Inf`,
/// else the shortest decimal that reads back as the same `f64` (whole
/// numbers without a fraction).
pub fn format_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(value: f64) -> String {
        let mut out = String::new();
        format_value(value, &mut out);
        out
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(formatted(3.0), "3");
        assert_eq!(formatted(0.25), "0.25");
        assert_eq!(formatted(f64::INFINITY), "+Inf");
        assert_eq!(formatted(f64::NEG_INFINITY), "-Inf");
        assert_eq!(formatted(f64::NAN), "NaN");
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let escaped = |v: &str| {
            let mut out = String::new();
            escape_label_value(v, &mut out);
            out
        };
        assert_eq!(escaped(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escaped("line\nbreak"), "line\\nbreak");
        assert_eq!(escaped("plain"), "plain");
    }

    #[test]
    fn a_family_is_written_with_help_type_and_labelled_samples() {
        let mut out = Exposition::default();
        out.family("x_total", MetricKind::Counter, Some("Things\\done\n."));
        out.sample("x_total", "", [("a", "1"), ("b", "q\"")], 2.0);
        out.sample("x_total", "", [], 0.5);
        out.single("up", MetricKind::Gauge, None, 1.0);
        assert_eq!(
            out.into_text(),
            "# HELP x_total Things\\\\done\\n.\n# TYPE x_total counter\n\
             x_total{a=\"1\",b=\"q\\\"\"} 2\nx_total 0.5\n# TYPE up gauge\nup 1\n"
        );
    }
}
