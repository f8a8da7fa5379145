//! The Redis sink: every `interval`, one round trip adds this process's
//! metric deltas to aggregates in Redis, for processes that can't be
//! scraped (short jobs, many replicas behind one address).
//!
//! # Key layout
//!
//! See the table in the crate's `layout` module, repeated here. With
//! prefix `P` (default `hf`):
//!
//! - `P:{metrics}:c:{name}`: hash, field `{labels}` → counter total, summed
//!   over every instance (`HINCRBY` of deltas).
//! - `P:{metrics}:h:{name}`: hash, fields `{le}|{labels}` (non-cumulative
//!   bucket count, `le` is a bound such as `0.005` or `+Inf`),
//!   `count|{labels}` and `sum|{labels}` (`HINCRBYFLOAT`), summed over every
//!   instance.
//! - `P:{metrics}:g:{instance}`: hash, field `{name}{{labels}}` → the
//!   instance's current gauge value; the whole hash is replaced by each
//!   flush and expires after `gauge_ttl`, so a dead instance's gauges
//!   vanish.
//! - `P:{metrics}:help`: hash, `{name}` → help text.
//! - `P:{metrics}:seq:{instance}`: string `{epoch}:{seq}`, the last flush
//!   applied for this instance (see below).
//!
//! `{labels}` is the Prometheus form of the label set, sorted by name, with
//! escaped values (`outcome="ok",topic="orders"`). Every aggregate key has a
//! TTL (`ttl`, default 30 min) that each flush refreshes for every metric
//! the process knows, whether or not it changed.
//!
//! # Exactly once
//!
//! The flusher keeps a *baseline*: the values it knows Redis has. A flush
//! sends `current − baseline` and the baseline only advances when Redis
//! confirmed the flush, so a failed flush (Redis down) leaves its deltas for
//! the next success. When the reply is lost (a timeout after Redis applied
//! the flush), the same batch is sent again with the same sequence number:
//! the flush script compares it with `P:{metrics}:seq:{instance}` and skips a
//! batch it already applied. The epoch, random per flusher, keeps a
//! restarted process that reuses an instance id from being mistaken for a
//! retry. Memory stays bounded: one baseline entry per series and at most
//! one unconfirmed batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use holdfast_redis::{Redis, RedisError, redis};
use metrics::Key;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::layout;
use crate::registry::{HistogramSnapshot, SinkRegistry};

/// How long the final flush at shutdown may take before it is abandoned.
const FINAL_FLUSH_BUDGET: Duration = Duration::from_secs(2);
/// A flush that takes longer counts as failed (and is retried idempotently).
const MIN_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Applies one flush atomically and at most once per `(epoch, seq)`.
///
/// KEYS: seq key, gauge key, help key, then one key per counter or
/// histogram family. ARGV: epoch, seq, ttl ms, gauge ttl ms, number of
/// gauges, then `field value` per gauge, number of help texts, then
/// `name text` per help, then for each family key: number of ops, then
/// `op field value` per op (`i` HINCRBY, `f` HINCRBYFLOAT).
///
/// Returns `{applied, errors}`: `applied` is 0 when this batch was already
/// applied. Data commands run under `redis.pcall`, so a garbled field (not
/// a number, wrong type) costs that field only and never half-applies a
/// flush that would then be skipped as a duplicate.
const FLUSH_SCRIPT: &str = r#"
local epoch, seq = ARGV[1], tonumber(ARGV[2])
local ttl, gauge_ttl = ARGV[3], ARGV[4]
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' then
  local e, s = string.match(current, '^(.*):(%d+)$')
  if e == epoch and tonumber(s) >= seq then
    return {0, 0}
  end
end
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[2], 'PX', ttl)
local errors = 0
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then errors = errors + 1 end
end
local i = 5
redis.call('DEL', KEYS[2])
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  try('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], gauge_ttl) end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  try('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
if n > 0 then try('PEXPIRE', KEYS[3], ttl) end
for k = 4, #KEYS do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local cmd = 'HINCRBY'
    if ARGV[i] == 'f' then cmd = 'HINCRBYFLOAT' end
    try(cmd, KEYS[k], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  end
  try('PEXPIRE', KEYS[k], ttl)
end
return {1, errors}
"#;

/// Where and how often the sink flushes.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Key prefix (`hf`): keys are `{prefix}:{metrics}:...` (one hash tag: one Cluster slot).
    pub prefix: String,
    /// Time between flushes (default 5 s).
    pub interval: Duration,
    /// TTL of the aggregate keys, refreshed by every flush (default 30 min).
    pub ttl: Duration,
    /// TTL of this instance's gauges; `None` means `max(3 × interval, 15 s)`.
    pub gauge_ttl: Option<Duration>,
    /// This process's name in the `instance` label of its gauges (default
    /// `host-pid-random`).
    pub instance: String,
}

impl SinkConfig {
    /// Time between flushes unless configured otherwise.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// The gauge TTL in effect.
    pub fn effective_gauge_ttl(&self) -> Duration {
        self.gauge_ttl
            .unwrap_or_else(|| (self.interval * 3).max(Duration::from_secs(15)))
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            prefix: holdfast_core::Keys::DEFAULT_PREFIX.to_owned(),
            interval: Self::DEFAULT_INTERVAL,
            ttl: Duration::from_secs(30 * 60),
            gauge_ttl: None,
            instance: default_instance(),
        }
    }
}

/// `host-pid-random`, unique enough to tell processes apart.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        fastrand::u32(..0x100_0000)
    )
}

/// What one [`Flusher::flush`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Redis applied the batch now (`false`: it had been applied by an
    /// earlier attempt whose reply was lost).
    pub applied: bool,
    /// The batch was a retry of one that failed before.
    pub retried: bool,
    /// Field updates Redis refused (garbled data); those deltas are dropped.
    pub errors: u64,
}

/// The deltas of one batch, frozen until Redis confirms them.
struct Pending {
    seq: u64,
    /// Family key → `(op, field, value)`.
    ops: BTreeMap<String, Vec<(&'static str, String, String)>>,
    /// The values the baseline takes once confirmed.
    counters: Vec<(Key, u64)>,
    histograms: Vec<(Key, HistogramSnapshot)>,
    attempts: u32,
}

/// Computes and sends flushes; [`MetricsSink`] drives it on a timer, and a
/// benchmark or test may call [`Flusher::flush`] itself.
pub struct Flusher {
    registry: SinkRegistry,
    cfg: SinkConfig,
    script: redis::Script,
    /// Random per flusher, so sequence numbers of a new process never
    /// collide with those of an earlier one using the same instance id.
    epoch: String,
    next_seq: u64,
    baseline_counters: HashMap<Key, u64>,
    baseline_histograms: HashMap<Key, HistogramSnapshot>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("instance", &self.cfg.instance)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Flusher {
    /// A flusher of `registry` with nothing flushed yet.
    pub fn new(registry: SinkRegistry, cfg: SinkConfig) -> Self {
        Self {
            registry,
            cfg,
            script: redis::Script::new(FLUSH_SCRIPT),
            epoch: format!("{:016x}", fastrand::u64(..)),
            next_seq: 1,
            baseline_counters: HashMap::new(),
            baseline_histograms: HashMap::new(),
            pending: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SinkConfig {
        &self.cfg
    }

    /// Whether a batch waits for confirmation.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Sends one flush in one round trip: the unconfirmed batch if there is
    /// one (unchanged, so a retry never double counts), else the deltas
    /// since the last confirmed flush; gauges and help texts are always the
    /// current ones.
    pub async fn flush(&mut self, redis: &Redis) -> Result<FlushOutcome, RedisError> {
        redis.register_script(&self.script);
        let snapshot = self.registry.snapshot();
        let mut pending = match self.pending.take() {
            Some(pending) => pending,
            None => self.build_pending(&snapshot.counters, &snapshot.histograms),
        };
        pending.attempts += 1;
        let retried = pending.attempts > 1;

        // Every family the process knows gets its TTL refreshed, changed or not.
        let mut families: BTreeSet<String> = pending.ops.keys().cloned().collect();
        for (key, _) in &snapshot.counters {
            families.insert(layout::counter_key(&self.cfg.prefix, key.name()));
        }
        for (key, _) in &snapshot.histograms {
            families.insert(layout::histogram_key(&self.cfg.prefix, key.name()));
        }

        let prefix = &self.cfg.prefix;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(layout::seq_key(prefix, &self.cfg.instance))
            .key(layout::gauge_key(prefix, &self.cfg.instance))
            .key(layout::help_key(prefix))
            .arg(&self.epoch)
            .arg(pending.seq)
            .arg(duration_ms(self.cfg.ttl))
            .arg(duration_ms(self.cfg.effective_gauge_ttl()))
            .arg(snapshot.gauges.len());
        let mut value = String::new();
        for (key, gauge) in &snapshot.gauges {
            value.clear();
            layout::format_value(*gauge, &mut value);
            invocation
                .arg(format!(
                    "{}{{{}}}",
                    key.name(),
                    layout::encode_key_labels(key)
                ))
                .arg(value.as_str());
        }
        invocation.arg(snapshot.help.len());
        for (name, help) in &snapshot.help {
            invocation.arg(name).arg(help);
        }
        for family in &families {
            invocation.key(family);
            let ops = pending.ops.get(family).map(Vec::as_slice).unwrap_or(&[]);
            invocation.arg(ops.len());
            for (op, field, value) in ops {
                invocation.arg(*op).arg(field).arg(value);
            }
        }

        let timeout = self.cfg.interval.max(MIN_FLUSH_TIMEOUT);
        let result: Result<(i64, i64), RedisError> = redis.script(&invocation, timeout).await;
        drop(invocation);
        let (applied, errors) = match result {
            Ok(reply) => reply,
            Err(error) => {
                // Unconfirmed: maybe applied, maybe not; the retry decides.
                self.pending = Some(pending);
                return Err(error);
            }
        };
        // Confirmed: the baseline takes the values this batch was cut from.
        self.baseline_counters.extend(pending.counters);
        self.baseline_histograms.extend(pending.histograms);
        Ok(FlushOutcome {
            applied: applied == 1,
            retried,
            errors: u64::try_from(errors).unwrap_or(0),
        })
    }

    fn build_pending(
        &mut self,
        counters: &[(Key, u64)],
        histograms: &[(Key, HistogramSnapshot)],
    ) -> Pending {
        let prefix = &self.cfg.prefix;
        let mut ops: BTreeMap<String, Vec<(&'static str, String, String)>> = BTreeMap::new();
        let mut new_counters = Vec::new();
        for (key, value) in counters {
            let before = self.baseline_counters.get(key).copied().unwrap_or(0);
            // A counter set lower with `absolute` restarts from there.
            let delta = value.saturating_sub(before);
            if delta > 0 {
                let delta = i64::try_from(delta).unwrap_or(i64::MAX);
                ops.entry(layout::counter_key(prefix, key.name()))
                    .or_default()
                    .push(("i", layout::encode_key_labels(key), delta.to_string()));
            }
            if *value != before {
                new_counters.push((key.clone(), *value));
            }
        }
        let mut new_histograms = Vec::new();
        for (key, now) in histograms {
            let before = self.baseline_histograms.get(key);
            if before.is_some_and(|b| b.count == now.count && b.buckets == now.buckets) {
                continue;
            }
            let labels = layout::encode_key_labels(key);
            let family = ops
                .entry(layout::histogram_key(prefix, key.name()))
                .or_default();
            let mut le = String::new();
            for (i, count) in now.buckets.iter().enumerate() {
                let old = before.and_then(|b| b.buckets.get(i)).copied().unwrap_or(0);
                let delta = count.saturating_sub(old);
                if delta == 0 {
                    continue;
                }
                le.clear();
                layout::format_value(now.bounds.get(i).copied().unwrap_or(f64::INFINITY), &mut le);
                family.push((
                    "i",
                    format!("{le}|{labels}"),
                    i64::try_from(delta).unwrap_or(i64::MAX).to_string(),
                ));
            }
            let count_delta = now.count.saturating_sub(before.map_or(0, |b| b.count));
            if count_delta > 0 {
                family.push((
                    "i",
                    format!("count|{labels}"),
                    i64::try_from(count_delta).unwrap_or(i64::MAX).to_string(),
                ));
            }
            let sum_delta = now.sum - before.map_or(0.0, |b| b.sum);
            if sum_delta != 0.0 && sum_delta.is_finite() {
                family.push(("f", format!("sum|{labels}"), format!("{sum_delta}")));
            }
            new_histograms.push((key.clone(), now.clone()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Pending {
            seq,
            ops,
            counters: new_counters,
            histograms: new_histograms,
            attempts: 0,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The background task that flushes a registry to Redis on a timer.
#[derive(Debug)]
pub struct MetricsSink;

impl MetricsSink {
    /// Spawns the flush loop. It flushes every `cfg.interval` until
    /// `shutdown` is cancelled, then makes a final flush (at most 2 s, so a
    /// dead Redis can't hold up the exit) and ends.
    pub fn start(
        redis: Redis,
        registry: SinkRegistry,
        cfg: SinkConfig,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let flusher = Flusher::new(registry, cfg);
        tokio::spawn(run(redis, flusher, shutdown))
    }
}

async fn run(redis: Redis, mut flusher: Flusher, shutdown: CancellationToken) {
    let interval = flusher.config().interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    // After a stall, one flush carries everything; no burst of catch-up ticks.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match flusher.flush(&redis).await {
            Ok(outcome) => {
                if failing {
                    tracing::info!("metrics flush to redis succeeded again");
                    failing = false;
                }
                if outcome.errors > 0 {
                    tracing::warn!(errors = outcome.errors, "redis refused some metric updates");
                }
                // The batch that just went through was cut before the
                // outage; what accumulated since goes now, not a tick later.
                if outcome.retried
                    && let Err(error) = flusher.flush(&redis).await
                {
                    tracing::debug!(%error, "metrics catch-up flush failed");
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "metrics flush to redis failed; deltas kept for the next one");
                    failing = true;
                }
            }
        }
    }
    let _ = tokio::time::timeout(FINAL_FLUSH_BUDGET, async {
        // A pending retry and then the remainder: at most two rounds.
        for _ in 0..2 {
            match flusher.flush(&redis).await {
                Ok(outcome) if !outcome.retried => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "final metrics flush failed");
                    break;
                }
            }
        }
    })
    .await;
}
