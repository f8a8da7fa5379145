//! How the exporter writes its own families: each carries the help text
//! listed in [`names::EXPORTER`], and all but a few `INFO` counters are
//! gauges, with one unlabelled sample or one sample per label value.

use holdfast_core::metric_names as names;
use holdfast_telemetry::exposition::{Exposition, MetricKind as Kind};

/// The help text of an exporter family, from [`names::EXPORTER`].
pub(super) fn help(name: &str) -> Option<&'static str> {
    names::EXPORTER
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, help)| *help)
}

/// The family `name` of `kind` with its one unlabelled sample.
pub(super) fn single(out: &mut Exposition, name: &str, kind: Kind, value: f64) {
    out.single(name, kind, help(name), value);
}

/// The gauge `name` with its one unlabelled sample.
pub(super) fn gauge(out: &mut Exposition, name: &str, value: f64) {
    single(out, name, Kind::Gauge, value);
}

/// The gauge family `name` with one sample per entry, labelled `label`
/// with the entry's value; `None` stands for an entry that was listed but
/// could not be read, which gets no sample. Without any entry, not even the
/// family is written.
pub(super) fn labelled_gauges<V: AsRef<str>>(
    out: &mut Exposition,
    name: &str,
    label: &str,
    entries: impl IntoIterator<Item = Option<(V, f64)>>,
) {
    let mut entries = entries.into_iter().peekable();
    if entries.peek().is_none() {
        return;
    }
    out.family(name, Kind::Gauge, help(name));
    for (label_value, value) in entries.flatten() {
        out.sample(name, "", [(label, label_value.as_ref())], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exporter_metric_has_help_text() {
        for (name, help) in names::EXPORTER {
            assert!(name.starts_with("holdfast_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help text");
        }
    }
}
