//! What the dashboard shows: the registered instances, each with what its
//! own `/health` says, read fresh for every page or JSON request.

use std::sync::{Mutex, PoisonError};

use holdfast_core::{Deadline, Keys};
use holdfast_redis::Redis;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::control::ControlClient;
use super::{HEALTH_TIMEOUT, MAX_CONCURRENT_READS};
use crate::registry::{self, Instance};
use crate::start::StartError;
use holdfast_chaos::stack_control::{ActionRecord, StackView};
use std::sync::Arc;

/// The state of the stack, as `GET /api/dashboard/state` answers it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DashboardState {
    /// The dashboard's own Redis connection: `ready`, `reconnecting`, …
    #[schema(value_type = String)]
    pub redis: &'static str,
    /// Whether the instance list was read from Redis now (`false`: the
    /// last list read, kept while Redis is down).
    pub registry_fresh: bool,
    /// Every instance, by role.
    pub instances: Vec<InstanceView>,
    /// When this state was read, in unix milliseconds.
    pub read_at_unix_ms: u64,
    /// Whether this dashboard controls a stack (chaos actions possible).
    pub control: bool,
    /// The stack as its control API shows it: `processes` (name, pid,
    /// running, restarts, admin_url, log), `redis` (private, running, port,
    /// proxy), `actions` (each with why it is unavailable), `running`,
    /// `past` and recent `events`.
    #[schema(value_type = Option<Object>)]
    pub stack: Option<StackView>,
    /// Why `stack` is missing although the dashboard controls a stack.
    pub stack_error: Option<String>,
    /// Redis essentials from `INFO`, while the dashboard's Redis answers.
    pub redis_info: Option<RedisEssentials>,
    /// Every topic the exporter reports: lag, pending and length now.
    #[schema(value_type = Object)]
    pub topics: std::collections::BTreeMap<String, super::charts::TopicPoint>,
    /// Chaos actions: the past ones, then the one running (each `id`,
    /// `action`, `label`, `params`, `started_at_unix_ms`,
    /// `ends_at_unix_ms`, `ended_at_unix_ms`).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<ActionRecord>,
}

/// What `INFO` says of the Redis the dashboard uses.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RedisEssentials {
    /// `redis_version`.
    pub version: String,
    /// `master` or `slave` (a replica).
    pub role: String,
    /// Memory in use, bytes.
    pub used_memory: u64,
    /// `maxmemory`, bytes (0: no limit).
    pub max_memory: u64,
    /// Client connections.
    pub connected_clients: u64,
    /// Commands per second now.
    pub ops_per_sec: u64,
    /// Whether the append-only file is on.
    pub aof_enabled: bool,
    /// Seconds since the last RDB save.
    pub seconds_since_save: Option<u64>,
    /// Seconds it has been up.
    pub uptime_s: u64,
}

impl RedisEssentials {
    fn from_info(text: &str, now_s: u64) -> Self {
        let info = crate::exporter::info::Info::parse(text);
        let number = |field| info.number(field).unwrap_or(0.0).max(0.0) as u64;
        Self {
            version: info.get("redis_version").unwrap_or("").to_owned(),
            role: info.get("role").unwrap_or("").to_owned(),
            used_memory: number("used_memory"),
            max_memory: number("maxmemory"),
            connected_clients: number("connected_clients"),
            ops_per_sec: number("instantaneous_ops_per_sec"),
            aof_enabled: info.get("aof_enabled") == Some("1"),
            seconds_since_save: info
                .number("rdb_last_save_time")
                .map(|at| now_s.saturating_sub(at.max(0.0) as u64)),
            uptime_s: number("uptime_in_seconds"),
        }
    }

    /// Memory in use, for people (`1.2 MiB`).
    pub fn memory(&self) -> String {
        let mib = self.used_memory as f64 / (1024.0 * 1024.0);
        format!("{mib:.1} MiB")
    }
}

impl InstanceView {
    /// The link to its `/health`, when its admin URL is a plain HTTP(S)
    /// URL (the registry is data anyone with Redis access can write: a
    /// `javascript:` URL must never become a link).
    pub fn health_link(&self) -> Option<String> {
        self.admin_url
            .as_deref()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .map(|url| format!("{url}/health"))
    }
}

impl DashboardState {
    /// `HH:MM:SS` (UTC) of a moment in Unix milliseconds.
    pub fn time_of_day(&self, at_unix_ms: &u64) -> String {
        let seconds = at_unix_ms / 1000 % 86_400;
        format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    }

    /// Whole seconds from this reading to `at_unix_ms` (0 when past).
    pub fn seconds_until(&self, at_unix_ms: &u64) -> u64 {
        at_unix_ms
            .saturating_sub(self.read_at_unix_ms)
            .div_ceil(1000)
    }
}

/// One instance as the dashboard shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Its role.
    pub role: String,
    /// Its id in the registry.
    pub instance: String,
    /// Where its admin listener answers.
    pub admin_url: Option<String>,
    /// Whether its `/health/ready` would answer 200 (`false` also when it
    /// did not answer at all).
    pub healthy: bool,
    /// Whether it answered `/health` at all.
    pub reachable: bool,
    /// Its Redis connection state, as it reports it.
    pub redis_state: Option<String>,
    /// Its last Redis connection changes, as it reports them.
    pub redis_history: Vec<RedisChange>,
    /// Reconnect attempts since its connection was last lost (a count that
    /// keeps growing means Redis stays away).
    pub reconnect_attempts: Option<u64>,
    /// The last Redis error it saw.
    pub last_error: Option<String>,
    /// Its Redis circuit breaker.
    pub breaker: Option<String>,
    /// Calls waiting for a reply (ingress).
    pub calls_in_flight: Option<u64>,
    /// Busy terminals (workers).
    pub terminals_busy: Option<u64>,
    /// Terminals (workers).
    pub terminals_total: Option<u64>,
    /// Why it is not ready, as it says.
    pub not_ready_reasons: Vec<String>,
    /// Seconds since it started.
    pub uptime_s: u64,
}

/// One change of an instance's Redis connection state.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RedisChange {
    /// When, in unix milliseconds.
    pub at_unix_ms: u64,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// Why (`connected`, `ping_failed`, `auth_failed`, …).
    pub reason: String,
}

impl RedisChange {
    fn from_json(value: &Value) -> Self {
        let text = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Self {
            at_unix_ms: value.get("at_unix_ms").and_then(Value::as_u64).unwrap_or(0),
            from: text("from"),
            to: text("to"),
            reason: text("reason"),
        }
    }
}

/// Reads the state; shared by every request.
pub(super) struct Reader {
    redis: Redis,
    keys: Keys,
    client: reqwest::Client,
    /// The last list read from the registry, shown while Redis is down.
    last: Mutex<Vec<Instance>>,
    /// See [`MAX_CONCURRENT_READS`]; never closed.
    reads: Semaphore,
    /// The stack's control API, when the dashboard has one.
    control: Option<Arc<ControlClient>>,
    /// The charts' points (for the topics now).
    charts: Arc<super::charts::Charts>,
}

impl Reader {
    pub(super) fn new(
        redis: Redis,
        keys: Keys,
        control: Option<Arc<ControlClient>>,
        charts: Arc<super::charts::Charts>,
    ) -> Result<Self, StartError> {
        let client = reqwest::Client::builder()
            .timeout(HEALTH_TIMEOUT)
            .build()
            .map_err(StartError::HttpClient)?;
        Ok(Self {
            redis,
            keys,
            client,
            last: Mutex::new(Vec::new()),
            reads: Semaphore::new(MAX_CONCURRENT_READS),
            control,
            charts,
        })
    }

    /// Reads the registry and keeps the list; the last list read when
    /// Redis does not answer, with `false`.
    /// Where the registry cannot be read and the dashboard controls a
    /// stack, the stack's processes it does not know yet are added from
    /// the control API (so a stack without Redis is shown too).
    pub(super) async fn instances(&self) -> (Vec<Instance>, bool) {
        match registry::instances(&self.redis, &self.keys).await {
            Ok(found) => {
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) = found.clone();
                (found, true)
            }
            Err(err) => {
                tracing::debug!(error = %err, "registry not read; showing the last list");
                let mut known = self.known();
                if let Some(control) = &self.control
                    && let Ok(stack) = control.stack().await
                {
                    for process in stack.processes {
                        if known
                            .iter()
                            .any(|i| i.admin_url.as_deref() == Some(&process.admin_url))
                        {
                            continue;
                        }
                        known.push(Instance {
                            role: role_of(&process.name).to_owned(),
                            instance: process.name,
                            version: String::new(),
                            admin_url: Some(process.admin_url),
                            public_url: process.public_url,
                            started_unix_ms: process.started_unix_ms,
                        });
                    }
                    *self.last.lock().unwrap_or_else(PoisonError::into_inner) = known.clone();
                }
                (known, false)
            }
        }
    }

    /// The last list of instances read, without asking Redis.
    pub(super) fn known(&self) -> Vec<Instance> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A registered instance of `role` (the first by id), if one is known.
    pub(super) fn first_of(&self, role: &str) -> Option<Instance> {
        self.known()
            .into_iter()
            .filter(|i| i.role == role)
            .min_by(|a, b| a.instance.cmp(&b.instance))
    }

    /// The HTTP client the instances are read with.
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(super) async fn read(&self) -> DashboardState {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.reads.acquire().await;
        let (instances, fresh) = self.instances().await;
        let now = Deadline::now_unix_ms();
        // Every instance is asked at once, each bounded by HEALTH_TIMEOUT,
        // so a page takes as long as the slowest instance, not their sum;
        // the set is awaited here and aborts what is left if the request
        // goes away.
        let mut asking = tokio::task::JoinSet::new();
        for instance in instances {
            asking.spawn(view(self.client.clone(), instance, now));
        }
        let stack = async {
            match &self.control {
                Some(control) => Some(control.stack().await),
                None => None,
            }
        };
        let (stack, redis_info) = tokio::join!(stack, essentials(&self.redis, now));
        let mut views = Vec::with_capacity(asking.len());
        while let Some(done) = asking.join_next().await {
            if let Ok(view) = done {
                views.push(view);
            }
        }
        views.sort_by(|a, b| (&a.role, &a.instance).cmp(&(&b.role, &b.instance)));
        DashboardState {
            redis: self.redis.state().as_str(),
            registry_fresh: fresh,
            instances: views,
            read_at_unix_ms: now,
            control: self.control.is_some(),
            stack_error: stack.as_ref().and_then(|s| s.as_ref().err().cloned()),
            actions: match &stack {
                Some(Ok(view)) => view
                    .past
                    .iter()
                    .chain(view.running.iter())
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            },
            stack: stack.and_then(Result::ok),
            redis_info,
            topics: self.charts.topics_now(),
        }
    }
}

/// The role of a stack process by its name (`worker-2` is a worker).
fn role_of(process: &str) -> &str {
    process
        .rsplit_once('-')
        .filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit()))
        .map_or(process, |(role, _)| role)
}

/// Redis essentials, when the dashboard's Redis answers `INFO` in time.
async fn essentials(redis: &Redis, now_unix_ms: u64) -> Option<RedisEssentials> {
    if redis.state() != holdfast_redis::ConnState::Ready {
        return None;
    }
    let text: String = tokio::time::timeout(HEALTH_TIMEOUT, redis.info(None))
        .await
        .ok()?
        .ok()?;
    Some(RedisEssentials::from_info(&text, now_unix_ms / 1000))
}

/// One instance, with what its `/health` says.
async fn view(client: reqwest::Client, instance: Instance, now: u64) -> InstanceView {
    let health = match &instance.admin_url {
        Some(url) => match client.get(format!("{url}/health")).send().await {
            Ok(response) => response.json::<Value>().await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    view_of(instance, health.as_ref(), now)
}

/// What `/health` said (or that it said nothing) as a view.
fn view_of(instance: Instance, health: Option<&Value>, now: u64) -> InstanceView {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let redis = health.and_then(|h| h.get("redis"));
    let terminals = health.and_then(|h| h.get("terminals"));
    InstanceView {
        role: instance.role,
        instance: instance.instance,
        admin_url: instance.admin_url,
        healthy: health
            .and_then(|h| h.get("ready"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        reachable: health.is_some(),
        redis_state: text(redis.and_then(|r| r.get("state"))),
        redis_history: redis
            .and_then(|r| r.get("history"))
            .and_then(Value::as_array)
            .map(|changes| changes.iter().map(RedisChange::from_json).collect())
            .unwrap_or_default(),
        reconnect_attempts: redis
            .and_then(|r| r.get("reconnect_attempts"))
            .and_then(Value::as_u64),
        last_error: text(redis.and_then(|r| r.get("last_error"))),
        breaker: text(redis.and_then(|r| r.get("breaker"))),
        calls_in_flight: health
            .and_then(|h| h.get("calls_in_flight"))
            .and_then(Value::as_u64),
        terminals_busy: terminals
            .and_then(|t| t.get("active"))
            .and_then(Value::as_u64),
        terminals_total: terminals
            .and_then(|t| t.get("capacity"))
            .and_then(Value::as_u64),
        not_ready_reasons: health
            .and_then(|h| h.get("not_ready_reasons"))
            .and_then(Value::as_array)
            .map(|reasons| reasons.iter().filter_map(|r| text(Some(r))).collect())
            .unwrap_or_default(),
        uptime_s: if instance.started_unix_ms == 0 {
            0
        } else {
            now.saturating_sub(instance.started_unix_ms) / 1000
        },
    }
}
