//! Reading the sink's aggregates back out of Redis and rendering them as
//! one Prometheus endpoint (what `holdfast exporter` serves). The same
//! renderer serves each role's own admin `/metrics`, from the process's
//! [`SinkRegistry`](crate::SinkRegistry) ([`Snapshot::from_registry`]).
//!
//! [`read`] finds the metric keys with `SCAN` (never `KEYS`, which would
//! block Redis on a large keyspace) and reads them with a Lua script, in
//! batches sent in one pipeline. Each script call returns its keys as of
//! one moment, and a flush writes a whole histogram (buckets, count and
//! sum) in one script, so a metric is never seen half-updated. Counters and
//! histograms are already summed over instances in Redis; gauges are listed
//! per instance with an `instance` label. [`render`] writes Prometheus text
//! format 0.0.4, adding to every histogram a gauge family
//! `<name>_quantile{quantile="0.5|0.95|0.99"}` estimated from its buckets
//! by linear interpolation, as Prometheus' `histogram_quantile` does.
//!
//! Data that does not parse (a garbled field, a wrong type, a name that is
//! not a metric name) is skipped with a debug log, never a panic.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use holdfast_redis::{Redis, RedisError, redis};
use metrics::Key;

use crate::exposition::Exposition;
use crate::layout;
use crate::registry::RegistrySnapshot;

/// Quantiles estimated for every histogram.
pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];
/// Keys read per script call; calls are pipelined, so this bounds how long
/// one call holds Redis, not the number of round trips.
const KEYS_PER_CALL: usize = 16;
/// `SCAN ... COUNT`: keys Redis looks at per step.
const SCAN_COUNT: usize = 1000;
/// Limit on each round trip of a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns `HGETALL` of every key that is a hash (an empty list otherwise),
/// all from the same moment.
const READ_SCRIPT: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash' then
    out[i] = redis.call('HGETALL', key)
  else
    out[i] = {}
  end
end
return out
"#;

static READ: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(READ_SCRIPT));

/// The kind of a metric family (the exposition's `# TYPE`).
pub use crate::exposition::MetricKind as Kind;

/// One series of a histogram, summed over instances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSeries {
    /// Non-cumulative count per upper bound (`+Inf` included when seen).
    pub buckets: BTreeMap<Le, f64>,
    /// Number of observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
}

impl HistogramSeries {
    /// Cumulative `(upper bound, count)` pairs ending with `+Inf` (equal to
    /// the count), as `_bucket` lines show them.
    pub fn cumulative(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(self.buckets.len() + 1);
        let mut total = 0.0;
        for (le, n) in &self.buckets {
            total += n;
            if le.0.is_finite() {
                out.push((le.0, total));
            }
        }
        out.push((f64::INFINITY, self.count.max(total)));
        out
    }
}

/// A bucket's upper bound, ordered (never NaN).
#[derive(Clone, Copy, Debug)]
pub struct Le(pub f64);

impl PartialEq for Le {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Le {}

impl PartialOrd for Le {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Le {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A label set: `(name, value)` pairs in a stable order.
pub type Labels = Vec<(String, String)>;

/// One metric family as read from Redis.
#[derive(Clone, Debug, PartialEq)]
pub enum Family {
    /// Counter series by label set.
    Counter(BTreeMap<Labels, f64>),
    /// Gauge series by label set (including `instance`).
    Gauge(BTreeMap<Labels, f64>),
    /// Histogram series by label set.
    Histogram(BTreeMap<Labels, HistogramSeries>),
}

impl Family {
    /// The family's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Family::Counter(_) => Kind::Counter,
            Family::Gauge(_) => Kind::Gauge,
            Family::Histogram(_) => Kind::Histogram,
        }
    }
}

/// Every metric in Redis under one prefix, merged over instances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Families by metric name.
    pub families: BTreeMap<String, Family>,
    /// Help texts by metric name.
    pub help: BTreeMap<String, String>,
}

impl Snapshot {
    /// This process's own metrics (a [`SinkRegistry`] snapshot) as a
    /// snapshot [`render`] accepts: what a role's admin `/metrics` serves.
    ///
    /// Labels are sorted by name, gauges get no `instance` label, and every
    /// bucket of a histogram is listed, empty ones included. Series whose
    /// metric or label names are not valid Prometheus names are skipped
    /// (logged at debug), as when they are read back from Redis.
    ///
    /// [`SinkRegistry`]: crate::SinkRegistry
    pub fn from_registry(registry: &RegistrySnapshot) -> Self {
        let mut snapshot = Snapshot::default();
        for (key, value) in &registry.counters {
            let Some(labels) = key_labels(key) else {
                continue;
            };
            if let Some(Family::Counter(series)) = family(&mut snapshot, key.name(), Kind::Counter)
            {
                *series.entry(labels).or_default() += *value as f64;
            }
        }
        for (key, value) in &registry.gauges {
            let Some(labels) = key_labels(key) else {
                continue;
            };
            if let Some(Family::Gauge(series)) = family(&mut snapshot, key.name(), Kind::Gauge) {
                series.insert(labels, *value);
            }
        }
        for (key, h) in &registry.histograms {
            let Some(labels) = key_labels(key) else {
                continue;
            };
            let Some(Family::Histogram(series)) =
                family(&mut snapshot, key.name(), Kind::Histogram)
            else {
                continue;
            };
            let bounds = h.bounds.iter().copied().chain([f64::INFINITY]);
            let buckets: BTreeMap<Le, f64> = bounds
                .zip(&h.buckets)
                .map(|(le, n)| (Le(le), *n as f64))
                .collect();
            series.insert(
                labels,
                HistogramSeries {
                    buckets,
                    count: h.count as f64,
                    sum: h.sum,
                },
            );
        }
        snapshot.help = registry.help.iter().cloned().collect();
        snapshot
    }
}

/// The labels of a `metrics` key, sorted by name; `None` (logged) when a
/// label name is not a valid Prometheus label name.
fn key_labels(key: &Key) -> Option<Labels> {
    let mut labels: Labels = Vec::with_capacity(key.labels().len());
    for label in key.labels() {
        if !layout::is_label_name(label.key()) {
            tracing::debug!(
                name = key.name(),
                label = label.key(),
                "skipping a series whose label name is not valid"
            );
            return None;
        }
        labels.push((label.key().to_owned(), label.value().to_owned()));
    }
    labels.sort_unstable();
    Some(labels)
}

/// Reads and renders in one go: what the exporter's `/metrics` serves.
pub async fn scrape(redis: &Redis, prefix: &str) -> Result<String, RedisError> {
    Ok(render(&read(redis, prefix).await?))
}

/// Reads every metric under `prefix` from Redis.
pub async fn read(redis: &Redis, prefix: &str) -> Result<Snapshot, RedisError> {
    redis.register_script(&READ);
    let root = layout::root(prefix);
    let pattern = format!("{}*", glob_escape(&root));
    // Every metrics key shares one hash tag, so on a cluster they live on
    // one primary; `scan` visits every primary all the same.
    let mut keys: Vec<String> = redis
        .scan(&pattern, SCAN_COUNT, usize::MAX, SCRAPE_TIMEOUT)
        .await?
        .into_iter()
        .filter(|key| key.starts_with(&root) && is_data_key(&key[root.len()..]))
        .collect();
    // SCAN may return a key more than once.
    keys.sort_unstable();
    keys.dedup();

    let mut snapshot = Snapshot::default();
    if keys.is_empty() {
        return Ok(snapshot);
    }
    let hashes = read_hashes(redis, &keys).await?;
    for (key, fields) in keys.iter().zip(hashes) {
        absorb(&mut snapshot, &key[root.len()..], fields);
    }
    Ok(snapshot)
}

fn is_data_key(rest: &str) -> bool {
    rest == "help" || rest.starts_with("c:") || rest.starts_with("h:") || rest.starts_with("g:")
}

/// `HGETALL` of every key, through the read script, in one pipeline.
async fn read_hashes(redis: &Redis, keys: &[String]) -> Result<Vec<Vec<Vec<u8>>>, RedisError> {
    let mut pipe = redis::pipe();
    for chunk in keys.chunks(KEYS_PER_CALL) {
        pipe.cmd("EVALSHA")
            .arg(READ.get_hash())
            .arg(chunk.len())
            .arg(chunk);
    }
    let replies: Vec<Vec<Vec<Vec<u8>>>> = match redis.pipe(&pipe, SCRAPE_TIMEOUT).await {
        Err(error) if error.is_no_script() || is_no_script_text(&error) => {
            // Flushed scripts (SCRIPT FLUSH, a restart before the supervisor
            // reloaded them): load once and try again.
            redis
                .run(SCRAPE_TIMEOUT, |mut conn| async move {
                    READ.prepare_invoke().load_async(&mut conn).await
                })
                .await?;
            redis.pipe(&pipe, SCRAPE_TIMEOUT).await?
        }
        other => other?,
    };
    Ok(replies.into_iter().flatten().collect())
}

fn is_no_script_text(error: &RedisError) -> bool {
    matches!(error, RedisError::Server(e) if e.to_string().contains("NOSCRIPT"))
}

/// Escapes glob characters of `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Folds one hash (`rest` is the key after `P:{metrics}:`) into the snapshot.
fn absorb(snapshot: &mut Snapshot, rest: &str, fields: Vec<Vec<u8>>) {
    let mut pairs = Vec::with_capacity(fields.len() / 2);
    let mut iter = fields.into_iter();
    while let (Some(field), Some(value)) = (iter.next(), iter.next()) {
        match (String::from_utf8(field), String::from_utf8(value)) {
            (Ok(f), Ok(v)) => pairs.push((f, v)),
            _ => tracing::debug!(key = rest, "skipping a metrics field that is not UTF-8"),
        }
    }
    if rest == "help" {
        for (name, help) in pairs {
            snapshot.help.insert(name, help);
        }
    } else if let Some(name) = rest.strip_prefix("c:") {
        absorb_counter(snapshot, name, pairs);
    } else if let Some(name) = rest.strip_prefix("h:") {
        absorb_histogram(snapshot, name, pairs);
    } else if let Some(instance) = rest.strip_prefix("g:") {
        absorb_gauges(snapshot, instance, pairs);
    }
}

/// The family `name` of the wanted kind, creating it; `None` (logged) when
/// the name is not a metric name or is taken by another kind.
fn family<'a>(snapshot: &'a mut Snapshot, name: &str, kind: Kind) -> Option<&'a mut Family> {
    if !layout::is_metric_name(name) {
        tracing::debug!(name, "skipping a metric whose name is not valid");
        return None;
    }
    let family = snapshot
        .families
        .entry(name.to_owned())
        .or_insert_with(|| match kind {
            Kind::Counter => Family::Counter(BTreeMap::new()),
            Kind::Gauge => Family::Gauge(BTreeMap::new()),
            Kind::Histogram => Family::Histogram(BTreeMap::new()),
        });
    if family.kind() != kind {
        tracing::debug!(
            name,
            ?kind,
            "skipping a metric already seen as another kind"
        );
        return None;
    }
    Some(family)
}

fn parse_labels_logged(name: &str, text: &str) -> Option<Labels> {
    let labels = layout::parse_labels(text);
    if labels.is_none() {
        tracing::debug!(name, field = text, "skipping a garbled label set");
    }
    labels
}

fn parse_value_logged(name: &str, text: &str) -> Option<f64> {
    let value = layout::parse_value(text);
    if value.is_none() {
        tracing::debug!(name, value = text, "skipping a value that is not a number");
    }
    value
}

fn absorb_counter(snapshot: &mut Snapshot, name: &str, pairs: Vec<(String, String)>) {
    let Some(Family::Counter(series)) = family(snapshot, name, Kind::Counter) else {
        return;
    };
    for (field, value) in pairs {
        if let (Some(labels), Some(value)) = (
            parse_labels_logged(name, &field),
            parse_value_logged(name, &value),
        ) {
            *series.entry(labels).or_default() += value;
        }
    }
}

fn absorb_histogram(snapshot: &mut Snapshot, name: &str, pairs: Vec<(String, String)>) {
    let Some(Family::Histogram(series)) = family(snapshot, name, Kind::Histogram) else {
        return;
    };
    for (field, value) in pairs {
        let Some((part, labels)) = field.split_once('|') else {
            tracing::debug!(name, field, "skipping a garbled histogram field");
            continue;
        };
        let (Some(labels), Some(value)) = (
            parse_labels_logged(name, labels),
            parse_value_logged(name, &value),
        ) else {
            continue;
        };
        let entry = series.entry(labels).or_default();
        match part {
            "count" => entry.count += value,
            "sum" => entry.sum += value,
            le => match layout::parse_value(le) {
                Some(le) if !le.is_nan() => *entry.buckets.entry(Le(le)).or_default() += value,
                _ => tracing::debug!(name, field, "skipping a garbled bucket bound"),
            },
        }
    }
}

fn absorb_gauges(snapshot: &mut Snapshot, instance: &str, pairs: Vec<(String, String)>) {
    for (field, value) in pairs {
        let Some((name, labels)) = field.strip_suffix('}').and_then(|f| f.split_once('{')) else {
            tracing::debug!(field, "skipping a garbled gauge field");
            continue;
        };
        let (Some(mut labels), Some(value)) = (
            parse_labels_logged(name, labels),
            parse_value_logged(name, &value),
        ) else {
            continue;
        };
        let Some(Family::Gauge(series)) = family(snapshot, name, Kind::Gauge) else {
            continue;
        };
        // A gauge that has its own `instance` label keeps it; the sink's
        // instance then goes under another name so series stay distinct.
        let label = if labels.iter().any(|(k, _)| k == "instance") {
            "holdfast_instance"
        } else {
            "instance"
        };
        labels.push((label.to_owned(), instance.to_owned()));
        series.insert(labels, value);
    }
}

/// Prometheus' `histogram_quantile`: the `q` quantile from cumulative
/// `(upper bound, count)` buckets sorted by bound, the last being `+Inf`.
///
/// The value is interpolated linearly inside the bucket where the rank
/// falls (the first bucket starts at 0); a rank in the `+Inf` bucket gives
/// the highest finite bound. NaN without observations, with fewer than two
/// buckets, or without a `+Inf` bucket.
pub fn histogram_quantile(q: f64, cumulative: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = cumulative.len();
    if n < 2 || cumulative[n - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Counts read at different moments could dip; Prometheus flattens them.
    let mut counts: Vec<f64> = Vec::with_capacity(n);
    let mut max = 0.0f64;
    for (_, c) in cumulative {
        max = max.max(*c);
        counts.push(max);
    }
    let observations = counts[n - 1];
    if observations <= 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = counts.iter().position(|c| *c >= rank).unwrap_or(n - 1);
    if b == n - 1 {
        return cumulative[n - 2].0;
    }
    if b == 0 && cumulative[0].0 <= 0.0 {
        return cumulative[0].0;
    }
    let (start, below) = if b == 0 {
        (0.0, 0.0)
    } else {
        (cumulative[b - 1].0, counts[b - 1])
    };
    let end = cumulative[b].0;
    let in_bucket = counts[b] - below;
    rank -= below;
    if in_bucket <= 0.0 {
        return start;
    }
    start + (end - start) * (rank / in_bucket)
}

/// Renders a snapshot in Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::with_capacity(64 * 1024);
    fn labelled(labels: &Labels) -> Vec<(&str, &str)> {
        labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
    for (name, family) in &snapshot.families {
        let help = snapshot.help.get(name).map(String::as_str);
        match family {
            Family::Counter(series) | Family::Gauge(series) => {
                out.family(name, family.kind(), help);
                for (labels, value) in series {
                    out.sample(name, "", labelled(labels), *value);
                }
            }
            Family::Histogram(series) => {
                out.family(name, Kind::Histogram, help);
                let mut le = String::new();
                for (labels, h) in series {
                    let pairs = labelled(labels);
                    for (bound, count) in h.cumulative() {
                        le.clear();
                        layout::format_value(bound, &mut le);
                        let with_le = pairs.iter().copied().chain([("le", le.as_str())]);
                        out.sample(name, "_bucket", with_le, count);
                    }
                    out.sample(name, "_sum", pairs.iter().copied(), h.sum);
                    out.sample(name, "_count", pairs, h.count);
                }
            }
        }
    }
    // Quantile estimates, as gauge families of their own so the histogram
    // families stay exactly what Prometheus expects.
    for (name, family) in &snapshot.families {
        let Family::Histogram(series) = family else {
            continue;
        };
        let qname = format!("{name}_quantile");
        if snapshot.families.contains_key(&qname) {
            continue;
        }
        let help = format!(
            "Quantiles of {name} estimated from its buckets by linear interpolation (as histogram_quantile)."
        );
        out.family(&qname, Kind::Gauge, Some(&help));
        let mut qtext = String::new();
        for (labels, h) in series {
            let pairs = labelled(labels);
            let cumulative = h.cumulative();
            for q in QUANTILES {
                qtext.clear();
                layout::format_value(q, &mut qtext);
                let value = histogram_quantile(q, &cumulative);
                let with_q = pairs.iter().copied().chain([("quantile", qtext.as_str())]);
                out.sample(&qname, "", with_q, value);
            }
        }
    }
    out.into_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cumulative buckets of `values` over `bounds`, plus `+Inf`.
    fn buckets_of(values: &[f64], bounds: &[f64]) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = bounds
            .iter()
            .map(|b| (*b, values.iter().filter(|v| **v <= *b).count() as f64))
            .collect();
        out.push((f64::INFINITY, values.len() as f64));
        out
    }

    fn fine_bounds(step: f64, up_to: f64) -> Vec<f64> {
        let mut bounds = Vec::new();
        let mut b = step;
        while b <= up_to + 1e-12 {
            bounds.push(b);
            b += step;
        }
        bounds
    }

    #[test]
    fn quantiles_of_a_uniform_distribution_are_exact_up_to_interpolation() {
        // 10,000 values evenly spread over (0, 1].
        let values: Vec<f64> = (1..=10_000).map(|i| i as f64 / 10_000.0).collect();
        let cumulative = buckets_of(&values, &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0]);
        for q in [0.5, 0.95, 0.99, 0.05, 0.3] {
            let estimate = histogram_quantile(q, &cumulative);
            assert!((estimate - q).abs() < 1e-9, "q={q}: {estimate}");
        }
    }

    #[test]
    fn quantiles_of_an_exponential_distribution_are_close_with_fine_buckets() {
        // Exponential with rate 1, by inverse transform of an even grid.
        let n = 100_000;
        let values: Vec<f64> = (0..n)
            .map(|i| -(1.0 - (i as f64 + 0.5) / n as f64).ln())
            .collect();
        let cumulative = buckets_of(&values, &fine_bounds(0.05, 10.0));
        for q in QUANTILES {
            let truth = -(1.0f64 - q).ln();
            let estimate = histogram_quantile(q, &cumulative);
            assert!(
                (estimate - truth).abs() < 0.05,
                "q={q}: {estimate} vs {truth}"
            );
        }
    }

    #[test]
    fn quantiles_of_latency_buckets_fall_inside_the_right_bucket() {
        // 90% at 3 ms, 9% at 40 ms, 1% at 2 s.
        let mut values = vec![0.003; 900];
        values.extend(vec![0.04; 90]);
        values.extend(vec![2.0; 10]);
        let cumulative = buckets_of(&values, holdfast_core::metric_names::LATENCY_BUCKETS);
        let p50 = histogram_quantile(0.5, &cumulative);
        let p95 = histogram_quantile(0.95, &cumulative);
        let p99 = histogram_quantile(0.99, &cumulative);
        assert!((0.0025..=0.005).contains(&p50), "{p50}");
        assert!((0.025..=0.05).contains(&p95), "{p95}");
        // Rank 990 is the last of the 40 ms values: the top of that bucket.
        assert!((p99 - 0.05).abs() < 1e-12, "{p99}");
        // p50 interpolates: rank 500 of 900 in (0.0025, 0.005].
        assert!((p50 - (0.0025 + 0.0025 * 500.0 / 900.0)).abs() < 1e-12);
    }

    #[test]
    fn quantile_edge_cases_follow_prometheus() {
        assert!(histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[(f64::INFINITY, 3.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[(1.0, 3.0), (2.0, 3.0)]).is_nan());
        // Everything above the highest bound: that bound.
        assert_eq!(
            histogram_quantile(0.99, &[(1.0, 0.0), (2.0, 0.0), (f64::INFINITY, 5.0)]),
            2.0
        );
        assert_eq!(
            histogram_quantile(-1.0, &[(1.0, 1.0), (f64::INFINITY, 1.0)]),
            f64::NEG_INFINITY
        );
        assert_eq!(
            histogram_quantile(2.0, &[(1.0, 1.0), (f64::INFINITY, 1.0)]),
            f64::INFINITY
        );
    }

    #[test]
    fn a_registry_snapshot_renders_with_sorted_labels_and_every_bucket() {
        let registry = crate::SinkRegistry::new();
        metrics::with_local_recorder(&registry, || {
            metrics::counter!("r_total", "z" => "1", "a" => "2").increment(3);
            metrics::gauge!("r_level", "k" => "v").set(2.5);
            metrics::histogram!("r_bytes").record(0.3);
            metrics::histogram!("r_wait_seconds", "b" => "x", "a" => "y").record(0.002);
            metrics::counter!("bad name_total").increment(1);
            metrics::counter!("r_bad_label_total", "bad-label" => "x").increment(1);
            metrics::describe_counter!("r_total", "Help.");
        });
        let text = render(&Snapshot::from_registry(&registry.snapshot()));
        assert!(
            text.contains("# HELP r_total Help.\n# TYPE r_total counter\n"),
            "{text}"
        );
        assert!(text.contains("r_total{a=\"2\",z=\"1\"} 3\n"), "{text}");
        assert!(
            text.contains("# TYPE r_level gauge\nr_level{k=\"v\"} 2.5\n"),
            "{text}"
        );
        // Not `_seconds`: the default buckets, cumulative, with `+Inf`.
        assert!(text.contains("# TYPE r_bytes histogram\n"), "{text}");
        assert!(text.contains("r_bytes_bucket{le=\"0.25\"} 0\n"), "{text}");
        assert!(text.contains("r_bytes_bucket{le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("r_bytes_bucket{le=\"10\"} 1\n"), "{text}");
        assert!(text.contains("r_bytes_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(
            text.contains("r_bytes_sum 0.3\nr_bytes_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("r_wait_seconds_bucket{a=\"y\",b=\"x\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE r_wait_seconds_quantile gauge\n"),
            "{text}"
        );
        assert!(!text.contains("bad"), "{text}");
    }

    #[test]
    fn garbled_fields_are_skipped_not_fatal() {
        let mut snapshot = Snapshot::default();
        let bytes = |pairs: &[(&str, &str)]| -> Vec<Vec<u8>> {
            pairs
                .iter()
                .flat_map(|(f, v)| [f.as_bytes().to_vec(), v.as_bytes().to_vec()])
                .collect()
        };
        absorb(
            &mut snapshot,
            "c:ok_total",
            bytes(&[("a=\"1\"", "3"), ("a=\"2", "4"), ("a=\"3\"", "x")]),
        );
        absorb(&mut snapshot, "c:bad name", bytes(&[("", "1")]));
        absorb(
            &mut snapshot,
            "h:d_seconds",
            bytes(&[("nope", "1"), ("zz|", "1"), ("count|", "2"), ("0.1|", "2")]),
        );
        absorb(
            &mut snapshot,
            "g:i1",
            bytes(&[("g{}", "1"), ("g", "2"), ("ok_total{}", "1")]),
        );
        let mut fields = bytes(&[("a=\"1\"", "1")]);
        fields.push(vec![0xff]);
        absorb(&mut snapshot, "c:odd_total", fields);
        let text = render(&snapshot);
        assert!(text.contains("ok_total{a=\"1\"} 3\n"), "{text}");
        assert!(!text.contains("a=\"3\""), "{text}");
        assert!(!text.contains("bad name"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"0.1\"} 2\n"), "{text}");
        assert!(text.contains("g{instance=\"i1\"} 1\n"), "{text}");
        assert!(text.contains("odd_total{a=\"1\"} 1\n"), "{text}");
    }
}
