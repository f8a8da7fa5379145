//! Scenarios: a stack, a load and a timeline of faults, written in TOML.
//!
//! Every built-in scenario is a TOML file under `scenarios/` in this crate,
//! compiled in; `holdfast chaos show NAME` prints it so a user can copy and
//! edit it, and `holdfast chaos run FILE` runs the edited copy.
//!
//! ```toml
//! name = "redis-crash"
//! description = "Redis is killed with SIGKILL under load and restarted."
//!
//! [stack]
//! workers = 2
//! durability = "always"        # appendfsync: always, everysec, no
//!
//! [load]
//! duration = "40s"
//! short_duration = "20s"       # with --short, the CI form
//! capacity_share = 0.8         # calls + jobs at 80 % of the measured capacity
//! jobs_per_sec = 20            # (or calls_per_sec = 40: a fixed rate)
//!
//! [load.surge]                 # optional: an overload window
//! times_capacity = 2.0
//! at = "10s"
//! for = "15s"
//!
//! [[fault]]
//! kind = "redis_kill"
//! at = "10s"
//! for = "8s"
//! short_at = "5s"
//! short_for = "4s"
//! ```
//!
//! A `[[fault]]` is a [`FaultStep`]: its window on the timeline here, its
//! kind and the kind's fields in [`crate::faults`] (and in the README's
//! table of fault kinds, which a test holds to the code).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::FaultAction;

/// The built-in scenarios: name and TOML text.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("redis-crash", include_str!("../scenarios/redis-crash.toml")),
    (
        "redis-restart",
        include_str!("../scenarios/redis-restart.toml"),
    ),
    (
        "redis-auth-failure",
        include_str!("../scenarios/redis-auth-failure.toml"),
    ),
    (
        "network-blackhole",
        include_str!("../scenarios/network-blackhole.toml"),
    ),
    ("slow-redis", include_str!("../scenarios/slow-redis.toml")),
    ("worker-kill", include_str!("../scenarios/worker-kill.toml")),
    (
        "sentinel-failover",
        include_str!("../scenarios/sentinel-failover.toml"),
    ),
    (
        "cluster-primary-kill",
        include_str!("../scenarios/cluster-primary-kill.toml"),
    ),
    ("db-down", include_str!("../scenarios/db-down.toml")),
    ("soak", include_str!("../scenarios/soak.toml")),
    ("overload", include_str!("../scenarios/overload.toml")),
];

/// The TOML text of a built-in scenario.
pub fn built_in(name: &str) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Neither a built-in name nor a readable file.
    #[error("no built-in scenario {name:?} and no such file ({source}); built-in: {known}")]
    NotFound {
        /// What was asked for.
        name: String,
        /// Why the file could not be read.
        source: std::io::Error,
        /// The built-in names.
        known: String,
    },
    /// The TOML does not describe a scenario.
    #[error("invalid scenario {name}: {source}")]
    Invalid {
        /// Name or path.
        name: String,
        /// What is wrong.
        source: toml::de::Error,
    },
    /// The scenario parses but makes no sense.
    #[error("invalid scenario {name}: {reason}")]
    Inconsistent {
        /// Name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A scenario as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, shown in reports.
    pub name: String,
    /// One sentence for people.
    pub description: String,
    /// The stack the runner starts.
    #[serde(default)]
    pub stack: StackSpec,
    /// The load that runs while the faults play.
    #[serde(default)]
    pub load: LoadPlan,
    /// The timeline of faults.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultStep>,
    /// Limits of the invariants.
    #[serde(default)]
    pub limits: Limits,
}

/// How much Redis keeps across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// AOF with `appendfsync always`: an acknowledged write survives SIGKILL.
    Always,
    /// AOF with `appendfsync everysec`: up to a second may be lost.
    Everysec,
    /// AOF with `appendfsync no`: the kernel decides.
    No,
    /// No persistence at all.
    None,
}

impl Durability {
    /// Whether the invariant "no accepted job lost" must hold.
    pub fn promises_no_loss(self) -> bool {
        self == Durability::Always
    }

    /// As written in the scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Everysec => "everysec",
            Durability::No => "no",
            Durability::None => "none",
        }
    }
}

/// Which Redis deployment the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One redis-server.
    #[default]
    Single,
    /// A primary, a replica and three sentinels; the roles on
    /// `redis+sentinel://`.
    Sentinel,
    /// Three primaries with a replica each; the roles on
    /// `redis+cluster://`.
    Cluster,
}

impl Topology {
    /// As written in the scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Sentinel => "sentinel",
            Topology::Cluster => "cluster",
        }
    }
}

/// The stack: Redis, workers, the ingress and the api.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackSpec {
    /// Worker processes.
    pub workers: usize,
    /// Redis persistence.
    pub durability: Durability,
    /// The Redis deployment: `single` (default), `sentinel` or `cluster`.
    /// Every server of a topology runs with `appendfsync always`.
    pub topology: Topology,
    /// Durability of every call and job through the ingress: `none`,
    /// `fsync` or `replicas:N` (its `--durability`).
    pub request_durability: holdfast_core::Durability,
    /// Partitions of the topic, on callers and workers alike.
    pub partitions: u16,
    /// Password Redis starts with (`redis_password` faults change it).
    pub redis_password: Option<String>,
    /// Put a fault proxy between every role and Redis.
    pub redis_proxy: bool,
    /// The api's database: `sqlite` (a file of the run), `postgres` or
    /// `mysql` (the server of `DATABASE_URL`, or the local default), or a URL.
    pub database: String,
    /// Put a fault proxy between the api and its database (not for SQLite).
    pub database_proxy: bool,
    /// Workers reclaim entries idle this long from a dead worker.
    #[serde(with = "crate::durations::text")]
    pub claim_timeout: Duration,
    /// The api's cache TTL: short, so copies expire during the faults.
    #[serde(with = "crate::durations::text")]
    pub cache_ttl: Duration,
    /// Simulated work per weather request.
    #[serde(with = "crate::durations::text")]
    pub processing_time: Duration,
}

impl StackSpec {
    /// Whether no accepted job may be lost: one server with `appendfsync
    /// always`, or a replicated topology where every request waits for a
    /// replica (`replicas:1` or more), since a failover keeps only what
    /// reached the replica.
    pub fn promises_no_loss(&self) -> bool {
        match self.topology {
            Topology::Single => self.durability.promises_no_loss(),
            Topology::Sentinel | Topology::Cluster => matches!(
                self.request_durability,
                holdfast_core::Durability::Replicas(n) if n >= 1
            ),
        }
    }

    /// What the durability is, in words for a report.
    pub fn durability_text(&self) -> String {
        match self.topology {
            Topology::Single => format!("appendfsync {}", self.durability.as_str()),
            topology => format!(
                "{} topology, appendfsync always, requests at {}",
                topology.as_str(),
                self.request_durability
            ),
        }
    }
}

impl Default for StackSpec {
    fn default() -> Self {
        Self {
            workers: 2,
            durability: Durability::Always,
            topology: Topology::Single,
            request_durability: holdfast_core::Durability::None,
            partitions: 1,
            redis_password: None,
            redis_proxy: false,
            database: "sqlite".into(),
            database_proxy: false,
            claim_timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(60),
            processing_time: Duration::from_millis(10),
        }
    }
}

/// The load: three open-model streams of requests at fixed rates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadPlan {
    /// Length of the load.
    #[serde(with = "crate::durations::text")]
    pub duration: Duration,
    /// Length with `--short`.
    #[serde(with = "crate::durations::text")]
    pub short_duration: Duration,
    /// `POST /WeatherForecast/city` per second (0: none).
    pub calls_per_sec: f64,
    /// `POST /jobs/weather` per second, each with its own idempotency key.
    pub jobs_per_sec: f64,
    /// `GET /api/products/{id}` per second.
    pub reads_per_sec: f64,
    /// Deadline sent with every call (`x-timeout-ms`) and held against
    /// every answer.
    #[serde(with = "crate::durations::text")]
    pub deadline: Duration,
    /// After the load, how long accepted jobs may take to finish.
    #[serde(with = "crate::durations::text")]
    pub settle: Duration,
    /// Follow the stack's measured capacity: a probe at the start of the
    /// run measures how many calls a second the stack answers, and calls
    /// then run at this share of it, less the jobs (which the same workers
    /// serve); `calls_per_sec` is then unused.
    pub capacity_share: Option<f64>,
    /// Extra calls for a while, on top of the others, so that the stack is
    /// offered a multiple of its capacity (needs `capacity_share`).
    pub surge: Option<Surge>,
}

/// A window on the timeline: `full` (start, length), or in the short form
/// the short start and length where given.
fn window(
    short: bool,
    full: (Duration, Duration),
    short_form: (Option<Duration>, Option<Duration>),
) -> (Duration, Duration) {
    if short {
        (
            short_form.0.unwrap_or(full.0),
            short_form.1.unwrap_or(full.1),
        )
    } else {
        full
    }
}

/// A window of overload: while it lasts, calls and jobs together come at
/// `times_capacity` times the measured capacity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surge {
    /// Offered load as a multiple of the capacity, e.g. 2.
    pub times_capacity: f64,
    /// When it starts, from the start of the load.
    #[serde(with = "crate::durations::text")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "for", with = "crate::durations::text")]
    pub lasts: Duration,
    /// `at` with `--short`.
    #[serde(default, with = "crate::durations::optional_text")]
    pub short_at: Option<Duration>,
    /// `for` with `--short`.
    #[serde(default, with = "crate::durations::optional_text")]
    pub short_for: Option<Duration>,
}

impl Surge {
    /// Start and length, in the short form or not.
    pub fn window(&self, short: bool) -> (Duration, Duration) {
        window(
            short,
            (self.at, self.lasts),
            (self.short_at, self.short_for),
        )
    }
}

impl Default for LoadPlan {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(40),
            short_duration: Duration::from_secs(20),
            calls_per_sec: 40.0,
            jobs_per_sec: 20.0,
            reads_per_sec: 100.0,
            deadline: Duration::from_secs(2),
            settle: Duration::from_secs(20),
            capacity_share: None,
            surge: None,
        }
    }
}

/// Limits the invariants are held to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest time, after a fault ends, until every load is healthy again.
    #[serde(with = "crate::durations::text")]
    pub recovery: Duration,
    /// How far past its deadline an answer may come (the issue's "+1 s").
    #[serde(with = "crate::durations::text")]
    pub deadline_grace: Duration,
    /// Least share of reads answered 200 while a fault is active, percent.
    pub read_availability_percent: f64,
    /// Least goodput during a surge: calls and jobs answered 2xx per
    /// second, as a share of the measured capacity, percent.
    pub overload_goodput_percent: f64,
    /// Longest time, after a surge ends, until every load is healthy again.
    #[serde(with = "crate::durations::text")]
    pub overload_recovery: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            recovery: Duration::from_secs(10),
            deadline_grace: Duration::from_secs(1),
            read_availability_percent: 100.0,
            overload_goodput_percent: 90.0,
            overload_recovery: Duration::from_secs(2),
        }
    }
}

/// One fault on the timeline: what it does (its kind and fields, see
/// [`crate::faults`]) and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultStep {
    /// Label for people (default: from the kind).
    #[serde(default)]
    pub name: Option<String>,
    /// What it does.
    #[serde(flatten)]
    pub action: FaultAction,
    /// When it starts, from the start of the load.
    #[serde(with = "crate::durations::text")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "for", with = "crate::durations::text")]
    pub lasts: Duration,
    /// `at` with `--short`.
    #[serde(default, with = "crate::durations::optional_text")]
    pub short_at: Option<Duration>,
    /// `for` with `--short`.
    #[serde(default, with = "crate::durations::optional_text")]
    pub short_for: Option<Duration>,
}

impl FaultStep {
    /// The label shown in reports.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.action.default_label(),
        }
    }

    /// Start and length, in the short form or not.
    pub fn window(&self, short: bool) -> (Duration, Duration) {
        window(
            short,
            (self.at, self.lasts),
            (self.short_at, self.short_for),
        )
    }
}

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some(text) = built_in(name_or_path) {
            return Scenario::parse(name_or_path, text);
        }
        let text =
            std::fs::read_to_string(name_or_path).map_err(|source| ScenarioError::NotFound {
                name: name_or_path.to_owned(),
                source,
                known: BUILT_IN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Scenario::parse(name_or_path, &text)
    }

    /// Parses and checks a scenario.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Invalid {
            name: name.to_owned(),
            source,
        })?;
        scenario.check()?;
        Ok(scenario)
    }

    /// The load's length in the chosen form.
    pub fn duration(&self, short: bool) -> Duration {
        if short {
            self.load.short_duration
        } else {
            self.load.duration
        }
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let fail = |reason: String| {
            Err(ScenarioError::Inconsistent {
                name: self.name.clone(),
                reason,
            })
        };
        if self.stack.workers == 0
            && (self.load.calls_per_sec > 0.0 || self.load.jobs_per_sec > 0.0)
        {
            return fail("calls or jobs need at least one worker".into());
        }
        match (self.load.capacity_share, &self.load.surge) {
            (Some(share), _) if !(share > 0.0 && share <= 1.0) => {
                return fail(format!(
                    "capacity_share {share} must be above 0 and at most 1"
                ));
            }
            (None, Some(_)) => return fail("a surge needs load.capacity_share".into()),
            (Some(_), Some(surge)) if !surge.times_capacity.is_finite() => {
                return fail("times_capacity must be a number".into());
            }
            (Some(share), Some(surge)) if surge.times_capacity <= share => {
                return fail(format!(
                    "a surge of {} times the capacity adds nothing to a load at {share} of it",
                    surge.times_capacity
                ));
            }
            _ => {}
        }
        if self.load.capacity_share.is_some() && self.stack.workers == 0 {
            return fail("following the capacity needs at least one worker".into());
        }
        for short in [false, true] {
            let duration = self.duration(short);
            if let Some(surge) = &self.load.surge {
                let (at, lasts) = surge.window(short);
                if at + lasts > duration {
                    return fail(format!(
                        "the surge ends at {:?}, after the load ({:?}{})",
                        at + lasts,
                        duration,
                        if short { ", short form" } else { "" }
                    ));
                }
            }
            for step in &self.faults {
                let (at, lasts) = step.window(short);
                if at + lasts > duration {
                    return fail(format!(
                        "fault {:?} ends at {:?}, after the load ({:?}{})",
                        step.label(),
                        at + lasts,
                        duration,
                        if short { ", short form" } else { "" }
                    ));
                }
            }
        }
        for step in &self.faults {
            step.action
                .check_stack(&step.label(), &self.stack)
                .or_else(fail)?;
        }
        if self.stack.topology != Topology::Single {
            if self.stack.redis_proxy || self.stack.redis_password.is_some() {
                return fail(format!(
                    "a {} topology has no redis proxy and no password of its own",
                    self.stack.topology.as_str()
                ));
            }
        } else if self.stack.partitions == 0 {
            return fail("partitions must be at least 1".into());
        }
        if self.stack.database_proxy && self.stack.database == "sqlite" {
            return fail("an SQLite file cannot sit behind a proxy; use postgres or mysql".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses_and_fits_its_load() {
        for (name, text) in BUILT_IN {
            let scenario = Scenario::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&scenario.name, name);
            assert!(
                scenario.duration(true) <= Duration::from_secs(45),
                "{name}: the short form must leave room for start and settle within 60 s"
            );
        }
    }

    /// Why a scenario named `x` with `body` after its name and description
    /// is refused.
    fn refusal(body: &str) -> String {
        let text = format!("name = \"x\"\ndescription = \"y\"\n{body}");
        match Scenario::parse("x", &text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(err) => err.to_string(),
        }
    }

    /// One test per case: the scenario body given to [`refusal`], and words
    /// its refusal must contain.
    macro_rules! refused {
        ($($test:ident: $body:expr => $says:literal;)*) => {$(
            #[test]
            fn $test() {
                let err = refusal($body);
                assert!(err.contains($says), "{err}");
            }
        )*};
    }

    refused! {
        a_fault_past_the_end_of_the_load_is_refused: r#"
            [load]
            duration = "10s"
            short_duration = "5s"
            [[fault]]
            kind = "redis_kill"
            at = "8s"
            for = "5s"
        "# => "after the load";
        a_proxy_fault_needs_its_proxy: r#"
            [[fault]]
            kind = "proxy"
            target = "redis"
            fault = { kind = "blackhole" }
            at = "1s"
            for = "1s"
        "# => "redis_proxy";
        unknown_fields_are_refused: "workres = 3\n" => "workres";
        a_surge_needs_the_capacity: r#"
            [load.surge]
            times_capacity = 2.0
            at = "1s"
            for = "1s"
        "# => "capacity_share";
        a_surge_must_add_load: r#"
            [load]
            capacity_share = 0.8
            [load.surge]
            times_capacity = 0.5
            at = "1s"
            for = "1s"
        "# => "adds nothing";
        a_surge_past_the_end_is_refused: r#"
            [load]
            duration = "10s"
            short_duration = "5s"
            capacity_share = 0.8
            [load.surge]
            times_capacity = 2.0
            at = "4s"
            for = "4s"
        "# => "after the load";
    }
}
