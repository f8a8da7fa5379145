//! What the dashboard shows: the registered instances, each with what its
//! own `/health` says, read fresh for every page or JSON request.

use std::sync::Mutex;

use holdfast_core::{Deadline, Keys};
use holdfast_redis::Redis;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::control::ControlClient;
use super::{HEALTH_TIMEOUT, MAX_CONCURRENT_READS};
use crate::registry::{self, Instance};
use crate::start::StartError;
use holdfast_chaos::stack_control::StackView;
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
    /// Its Redis circuit breaker.
    pub breaker: Option<String>,
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
}

impl Reader {
    pub(super) fn new(
        redis: Redis,
        keys: Keys,
        control: Option<Arc<ControlClient>>,
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
        })
    }

    /// Reads the registry and keeps the list; the last list read when
    /// Redis does not answer, with `false`.
    pub(super) async fn instances(&self) -> (Vec<Instance>, bool) {
        match registry::instances(&self.redis, &self.keys).await {
            Ok(found) => {
                *self.last.lock().expect("last instances lock poisoned") = found.clone();
                (found, true)
            }
            Err(err) => {
                tracing::debug!(error = %err, "registry not read; showing the last list");
                let last = self.last.lock().expect("last instances lock poisoned");
                (last.clone(), false)
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
        let stack = stack.await;
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
            stack: stack.and_then(Result::ok),
        }
    }
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
        breaker: text(redis.and_then(|r| r.get("breaker"))),
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
        uptime_s: now.saturating_sub(instance.started_unix_ms) / 1000,
    }
}
