//! Reading the Prometheus text an instance's `/metrics` serves: just what
//! the live charts need (sample lines with their labels and value), never
//! the comments.

/// One sample line: `name{label="value",…} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The metric name, suffix included (`…_bucket`, `…_total`).
    pub name: &'a str,
    /// The labels, in the order written, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// The value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if it has one.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`; lines that do not parse are skipped.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(sample)
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `a="x",b="y"}` → the labels and what follows the `}`.
fn label_set(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let name = text[..eq].trim();
        text = text[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((name, value));
        text = &text[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_labels_escapes_and_infinities_are_read() {
        let text = "# HELP x help\n# TYPE x counter\n\
            holdfast_http_requests_total{route=\"/a\",status=\"2xx\"} 12\n\
            holdfast_http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3 1700000000\n\
            odd{v=\"say \\\"hi\\\"\\n\"} 1.5\n\
            bare 7\n\
            broken{x=\"1\" 2\n";
        let all: Vec<_> = samples(text).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].name, "holdfast_http_requests_total");
        assert_eq!(all[0].label("status"), Some("2xx"));
        assert_eq!(all[0].value, 12.0);
        assert_eq!(all[1].label("le"), Some("+Inf"));
        assert_eq!(all[2].label("v"), Some("say \"hi\"\n"));
        assert_eq!(all[3].name, "bare");
        assert!(all[3].labels.is_empty());
    }
}
