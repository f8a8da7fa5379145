//! The control API of a running stack: what `holdfast up` serves on a
//! loopback port for its dashboard, and what a dashboard elsewhere reaches
//! with `--control-url URL --token T`.
//!
//! | Method and path | Answer |
//! |---|---|
//! | `GET /stack` | 200 [`StackView`]: processes, Redis, the action running, past actions, recent events |
//! | `POST /stack/chaos/{action}` (JSON [`ActionParams`]) | 202 [`ActionRecord`]; 404 `unknown_action`; 409 `action_running`; 409 `not_available`; 422 `invalid_params` |
//! | `POST /stack/chaos/end` | 200 the [`ActionRecord`] ended early; 409 `nothing_running` |
//!
//! Every request needs `Authorization: Bearer TOKEN`, else 401
//! `unauthorized`. Errors are problem+json.
//!
//! The actions, each played with the same [`FaultAction`] code the
//! scenario runner uses:
//!
//! | action | what it does | parameters (defaults) |
//! |---|---|---|
//! | `crash-redis` | SIGKILL to the private redis-server, started again after `down_for_s`, or by `end` when not given | `down_for_s` |
//! | `restart-redis` | clean shutdown, started again after `down_for_s` | `down_for_s` (45) |
//! | `redis-password` | the password changes and every client is disconnected; restored after `for_s` | `for_s` (30) |
//! | `slow-redis` | latency on the Redis proxy | `latency_ms` (300), `jitter_ms` (100), `for_s` (30) |
//! | `blackhole-redis` | the Redis proxy holds every byte | `for_s` (15) |
//! | `database-down` | the database proxy refuses and closes connections | `for_s` (15) |
//! | `kill-worker` | SIGKILL to one worker (`worker`, 1-based, or one at random); the supervisor starts it again | `worker` |
//!
//! One action runs at a time (`kill-worker` is instant and runs beside
//! another). `end` ends the running one early: the fault is reverted at
//! once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use holdfast_core::{PROBLEM_JSON, Problem};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faults::{Direction, Fault, FaultAction, ProxyFault, ProxyTarget, SharedStack};
use crate::supervisor::{EventLog, StackEvent, unix_ms};

/// Longest a fault may be held, also the hold of a `crash-redis` that is
/// ended by hand.
pub const LONGEST_HOLD: Duration = Duration::from_secs(3600);

/// Past actions kept.
pub const ACTIONS_KEPT: usize = 50;

/// Events a [`StackView`] carries.
pub const EVENTS_SHOWN: usize = 100;

/// Longest wait for the stack while a fault or the supervisor acts on it
/// (restarting Redis takes seconds); past it the last processes seen are
/// shown.
pub const VIEW_LOCK_WAIT: Duration = Duration::from_millis(150);

/// The actions, by the name the API takes, with what each does.
pub const ACTIONS: [(&str, &str); 7] = [
    (
        "crash-redis",
        "SIGKILL to redis-server; started again after down_for_s, or by hand",
    ),
    (
        "restart-redis",
        "redis-server shut down cleanly and started again after down_for_s",
    ),
    (
        "redis-password",
        "the Redis password changes and every client is disconnected for for_s",
    ),
    (
        "slow-redis",
        "latency_ms ± jitter_ms on every byte to and from Redis for for_s",
    ),
    (
        "blackhole-redis",
        "every byte to and from Redis held for for_s",
    ),
    (
        "database-down",
        "the database refuses connections for for_s",
    ),
    (
        "kill-worker",
        "SIGKILL to a worker; the supervisor starts it again",
    ),
];

/// The parameters of an action; each action reads the ones it names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionParams {
    /// How long Redis stays down (`crash-redis`, `restart-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_for_s: Option<f64>,
    /// How long the fault lasts (the other timed actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_s: Option<f64>,
    /// Mean added latency (`slow-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Jitter around it (`slow-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// Which worker, 1-based (`kill-worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
}

/// An action that ran or runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Increases by one per action.
    pub id: u64,
    /// Its name (`crash-redis`).
    pub action: String,
    /// What it does, in words.
    pub label: String,
    /// The parameters it was given.
    pub params: ActionParams,
    /// When it started, Unix milliseconds.
    pub started_at_unix_ms: u64,
    /// When it is due to end (`None`: when ended by hand).
    pub ends_at_unix_ms: Option<u64>,
    /// When it ended (`None` while it runs).
    pub ended_at_unix_ms: Option<u64>,
}

/// A role process as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessView {
    /// `worker-1`, `ingress`, ...
    pub name: String,
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// Whether it runs.
    pub running: bool,
    /// Restarts by the supervisor.
    pub restarts: u32,
    /// Its admin listener.
    pub admin_url: String,
    /// Its public listener, if it has one.
    pub public_url: Option<String>,
    /// When it was last started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// Its log file.
    pub log: String,
}

/// The stack's Redis as the control API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisView {
    /// Whether it is the stack's own redis-server (the Redis actions need
    /// one).
    pub private: bool,
    /// Whether that server runs.
    pub running: bool,
    /// Its port.
    pub port: Option<u16>,
    /// Whether the roles reach Redis through the fault proxy (the network
    /// actions need it).
    pub proxy: bool,
}

/// The whole stack as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackView {
    /// Every role process.
    pub processes: Vec<ProcessView>,
    /// Redis.
    pub redis: RedisView,
    /// Whether the api reaches its database through the fault proxy
    /// (`database-down` needs it).
    pub database_proxy: bool,
    /// Each action, and why it is unavailable on this stack.
    pub actions: Vec<ActionAvailability>,
    /// The action running, if one.
    pub running: Option<ActionRecord>,
    /// Actions that ended, newest last.
    pub past: Vec<ActionRecord>,
    /// Recent events, oldest first.
    pub events: Vec<StackEvent>,
}

/// Whether an action can be played on this stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAvailability {
    /// Its name.
    pub action: String,
    /// What it does.
    pub description: String,
    /// Why it cannot be played here, when it cannot.
    pub unavailable: Option<String>,
}

/// A refused control request, answered as problem+json.
#[derive(Debug, thiserror::Error)]
pub enum StackControlError {
    /// No or a wrong bearer token.
    #[error("this needs the stack's control token as `Authorization: Bearer TOKEN`")]
    Unauthorized,
    /// No action has this name.
    #[error("no action is named {0:?}; the actions are {names}", names = ACTIONS.map(|(n, _)| n).join(", "))]
    UnknownAction(String),
    /// Another action runs.
    #[error("{0} is running; end it first (POST /stack/chaos/end)")]
    ActionRunning(String),
    /// Nothing runs to be ended.
    #[error("no action is running")]
    NothingRunning,
    /// The stack lacks what the action acts on.
    #[error("{0}")]
    NotAvailable(String),
    /// The parameters are not valid.
    #[error("{0}")]
    InvalidParams(String),
}

impl StackControlError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::UnknownAction(_) => (StatusCode::NOT_FOUND, "unknown_action", "Unknown action"),
            Self::ActionRunning(_) => (
                StatusCode::CONFLICT,
                "action_running",
                "An action is running",
            ),
            Self::NothingRunning => (StatusCode::CONFLICT, "nothing_running", "Nothing running"),
            Self::NotAvailable(_) => (
                StatusCode::CONFLICT,
                "not_available",
                "Not available on this stack",
            ),
            Self::InvalidParams(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                "Invalid parameters",
            ),
        }
    }
}

impl IntoResponse for StackControlError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let problem = Problem::new(status.as_u16(), code, title, self.to_string());
        let mut response = (
            status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            Json(problem),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

struct Running {
    record: ActionRecord,
    cancel: CancellationToken,
}

/// Plays actions on a running stack; shared by the control API's handlers.
pub struct StackControl {
    stack: SharedStack,
    events: EventLog,
    token: String,
    running: Mutex<Option<Running>>,
    past: Mutex<VecDeque<ActionRecord>>,
    next_id: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    /// The processes, Redis and database proxy as last seen.
    last_seen: Mutex<Option<(Vec<ProcessView>, RedisView, bool)>>,
    /// Set by [`StackControl::end_all`]: no action starts any more.
    closing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for StackControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackControl").finish_non_exhaustive()
    }
}

/// What an action turns into on this stack.
enum Plan {
    /// A fault held for a while (or until ended).
    Fault {
        fault: FaultAction,
        hold: Duration,
        by_hand: bool,
    },
    /// A worker killed; nothing to hold.
    KillWorker(Option<usize>),
}

fn seconds(value: Option<f64>, default: f64, name: &str) -> Result<Duration, StackControlError> {
    let s = value.unwrap_or(default);
    if !(s > 0.0 && s <= LONGEST_HOLD.as_secs_f64()) {
        return Err(StackControlError::InvalidParams(format!(
            "{name} must be more than 0 and at most {} seconds (got {s})",
            LONGEST_HOLD.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

fn plan(action: &str, params: &ActionParams) -> Result<Plan, StackControlError> {
    let timed = |fault, default| -> Result<Plan, StackControlError> {
        Ok(Plan::Fault {
            fault,
            hold: seconds(params.for_s, default, "for_s")?,
            by_hand: false,
        })
    };
    let redis_proxy = |fault| {
        FaultAction::Proxy(ProxyFault {
            target: ProxyTarget::Redis,
            fault,
        })
    };
    match action {
        "crash-redis" => Ok(Plan::Fault {
            fault: FaultAction::RedisKill,
            hold: match params.down_for_s {
                Some(_) => seconds(params.down_for_s, 0.0, "down_for_s")?,
                None => LONGEST_HOLD,
            },
            by_hand: params.down_for_s.is_none(),
        }),
        "restart-redis" => Ok(Plan::Fault {
            fault: FaultAction::RedisStop,
            hold: seconds(params.down_for_s, 45.0, "down_for_s")?,
            by_hand: false,
        }),
        "redis-password" => timed(FaultAction::RedisPassword, 30.0),
        "slow-redis" => {
            let ms = params.latency_ms.unwrap_or(300);
            let jitter_ms = params.jitter_ms.unwrap_or(100);
            if ms > 60_000 || jitter_ms > ms {
                return Err(StackControlError::InvalidParams(format!(
                    "latency_ms must be at most 60000 and jitter_ms at most latency_ms (got {ms} and {jitter_ms})"
                )));
            }
            timed(
                redis_proxy(Fault::Latency {
                    ms,
                    jitter_ms,
                    direction: Direction::Both,
                }),
                30.0,
            )
        }
        "blackhole-redis" => timed(
            redis_proxy(Fault::Blackhole {
                direction: Direction::Both,
            }),
            15.0,
        ),
        "database-down" => timed(
            FaultAction::Proxy(ProxyFault {
                target: ProxyTarget::Database,
                fault: Fault::Down,
            }),
            15.0,
        ),
        "kill-worker" => Ok(Plan::KillWorker(params.worker)),
        other => Err(StackControlError::UnknownAction(other.to_owned())),
    }
}

impl StackControl {
    /// Control of `stack`, telling `events`, for holders of `token`.
    pub fn new(stack: SharedStack, events: EventLog, token: String) -> Arc<StackControl> {
        Arc::new(StackControl {
            stack,
            events,
            token,
            running: Mutex::new(None),
            past: Mutex::new(VecDeque::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            tasks: TaskTracker::new(),
            last_seen: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The routes of the control API.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/stack", get(view))
            .route("/stack/chaos/{action}", post(start))
            .with_state(self.clone())
    }

    /// Whether `headers` carry the token.
    fn authorized(&self, headers: &HeaderMap) -> Result<(), StackControlError> {
        if constant_time_eq(bearer_token(headers).as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err(StackControlError::Unauthorized)
        }
    }

    /// Ends the running action early and waits for every action's task: the
    /// faults are reverted before the stack stops.
    pub async fn end_all(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(running) = self.lock_running().as_ref() {
            running.cancel.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_past(&self) -> std::sync::MutexGuard<'_, VecDeque<ActionRecord>> {
        self.past.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn archive(&self, mut record: ActionRecord) {
        record.ended_at_unix_ms.get_or_insert_with(unix_ms);
        let mut past = self.lock_past();
        if past.len() == ACTIONS_KEPT {
            past.pop_front();
        }
        past.push_back(record);
    }

    /// The stack as it is now (or, while a fault or the supervisor holds
    /// it longer than [`VIEW_LOCK_WAIT`], its processes as last seen).
    pub async fn view(&self) -> StackView {
        let seen = match tokio::time::timeout(VIEW_LOCK_WAIT, self.stack.lock()).await {
            Ok(stack) => {
                let seen = seen_now(&stack);
                drop(stack);
                *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen.clone());
                seen
            }
            Err(_) => self
                .last_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default(),
        };
        let (processes, redis, database_proxy) = seen;
        let actions = ACTIONS
            .iter()
            .map(|(action, description)| ActionAvailability {
                action: (*action).to_owned(),
                description: (*description).to_owned(),
                unavailable: unavailable(action, &redis, database_proxy),
            })
            .collect();
        StackView {
            processes,
            redis,
            database_proxy,
            actions,
            running: self.lock_running().as_ref().map(|r| r.record.clone()),
            past: self.lock_past().iter().cloned().collect(),
            events: self.events.recent(EVENTS_SHOWN),
        }
    }

    /// Starts `action` with `params`.
    ///
    /// # Errors
    /// Unknown action, bad parameters, not available on this stack, or
    /// another action running.
    pub async fn start(
        self: &Arc<Self>,
        action: &str,
        params: ActionParams,
    ) -> Result<ActionRecord, StackControlError> {
        if action == "end" {
            return self.end();
        }
        let plan = plan(action, &params)?;
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StackControlError::NotAvailable(
                "the stack is stopping".into(),
            ));
        }
        let view = self.view().await;
        if let Some(reason) = unavailable(action, &view.redis, view.database_proxy) {
            return Err(StackControlError::NotAvailable(reason));
        }
        let next_id = || {
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let started = unix_ms();
        match plan {
            Plan::KillWorker(which) => {
                let label = self.kill_worker(which).await?;
                let record = ActionRecord {
                    id: next_id(),
                    action: action.to_owned(),
                    label,
                    params,
                    started_at_unix_ms: started,
                    ends_at_unix_ms: Some(started),
                    ended_at_unix_ms: Some(started),
                };
                self.archive(record.clone());
                Ok(record)
            }
            Plan::Fault {
                fault,
                hold,
                by_hand,
            } => {
                let label = label(action, &fault, hold, by_hand);
                let mut record = ActionRecord {
                    id: 0,
                    action: action.to_owned(),
                    label: label.clone(),
                    params,
                    started_at_unix_ms: started,
                    ends_at_unix_ms: (!by_hand).then(|| started + hold.as_millis() as u64),
                    ended_at_unix_ms: None,
                };
                let cancel = CancellationToken::new();
                {
                    let mut running = self.lock_running();
                    if let Some(other) = running.as_ref() {
                        return Err(StackControlError::ActionRunning(
                            other.record.action.clone(),
                        ));
                    }
                    record.id = next_id();
                    *running = Some(Running {
                        record: record.clone(),
                        cancel: cancel.clone(),
                    });
                }
                let control = self.clone();
                self.tasks.spawn(async move {
                    let until = Instant::now() + hold;
                    fault
                        .play(&label, &control.stack, &control.events, until, &cancel)
                        .await;
                    let finished = control.lock_running().take();
                    if let Some(running) = finished {
                        control.archive(running.record);
                    }
                });
                Ok(record)
            }
        }
    }

    fn end(&self) -> Result<ActionRecord, StackControlError> {
        let running = self.lock_running();
        let running = running.as_ref().ok_or(StackControlError::NothingRunning)?;
        running.cancel.cancel();
        self.events.push(
            None,
            format!("{} ended early by hand", running.record.action),
        );
        Ok(running.record.clone())
    }

    async fn kill_worker(&self, which: Option<usize>) -> Result<String, StackControlError> {
        let stack = self.stack.lock().await;
        let running: Vec<usize> = (0..stack.workers.len())
            .filter(|&i| stack.workers[i].is_running())
            .collect();
        let index = match which {
            Some(n) if n >= 1 && n <= stack.workers.len() => n - 1,
            Some(n) => {
                return Err(StackControlError::InvalidParams(format!(
                    "worker must be between 1 and {} (got {n})",
                    stack.workers.len()
                )));
            }
            None if running.is_empty() => {
                return Err(StackControlError::NotAvailable(
                    "no worker is running".into(),
                ));
            }
            None => running[fastrand::usize(..running.len())],
        };
        let worker = &stack.workers[index];
        if !worker.crash() {
            return Err(StackControlError::NotAvailable(format!(
                "{} is not running",
                worker.name
            )));
        }
        self.events.push(
            Some(&worker.name),
            "killed with SIGKILL from the control API",
        );
        Ok(format!("{} killed with SIGKILL", worker.name))
    }
}

/// The processes, Redis and database proxy of `stack`.
fn seen_now(stack: &crate::stack::Stack) -> (Vec<ProcessView>, RedisView, bool) {
    let processes = stack
        .roles()
        .map(|role| ProcessView {
            name: role.name.clone(),
            pid: role.pid(),
            running: role.is_running(),
            restarts: role.restarts(),
            admin_url: format!("http://{}", role.admin),
            public_url: stack.public_url(&role.name),
            started_unix_ms: role.started_unix_ms(),
            log: role.log().display().to_string(),
        })
        .collect();
    let redis = RedisView {
        private: stack.redis.is_some(),
        running: stack.redis.as_ref().is_some_and(|r| r.pid().is_some()),
        port: stack.redis.as_ref().map(|r| r.port()),
        proxy: stack.redis_proxy.is_some(),
    };
    (processes, redis, stack.database_proxy.is_some())
}

/// Why `action` cannot be played on a stack with this Redis and database.
fn unavailable(action: &str, redis: &RedisView, database_proxy: bool) -> Option<String> {
    match action {
        "crash-redis" | "restart-redis" | "redis-password" if !redis.private => Some(
            "the stack's Redis is not its own (REDIS_URL or REDIS_ENABLED=false): it is not crashed from here".into(),
        ),
        "slow-redis" | "blackhole-redis" if !redis.proxy => {
            Some("the roles reach Redis without the fault proxy (--no-proxy, or REDIS_URL)".into())
        }
        "database-down" if !database_proxy => Some(
            "the database is not networked (SQLite), or not behind the fault proxy".into(),
        ),
        _ => None,
    }
}

fn label(action: &str, fault: &FaultAction, hold: Duration, by_hand: bool) -> String {
    let how_long = holdfast_core::format_duration(Duration::from_millis(hold.as_millis() as u64));
    if action == "crash-redis" && by_hand {
        "redis crashed (SIGKILL) until ended by hand".into()
    } else {
        format!("{} for {how_long}", fault.default_label())
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; empty without one.
pub fn bearer_token(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn view(
    State(control): State<Arc<StackControl>>,
    headers: HeaderMap,
) -> Result<Json<StackView>, StackControlError> {
    control.authorized(&headers)?;
    Ok(Json(control.view().await))
}

async fn start(
    State(control): State<Arc<StackControl>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ActionParams>, JsonRejection>,
) -> Result<Response, StackControlError> {
    control.authorized(&headers)?;
    // An empty body means the defaults.
    let params = match body {
        Ok(Json(params)) => params,
        Err(JsonRejection::MissingJsonContentType(_)) if no_body(&headers) => {
            ActionParams::default()
        }
        Err(rejection) => return Err(StackControlError::InvalidParams(rejection.body_text())),
    };
    let ending = action == "end";
    let record = control.start(&action, params).await?;
    let status = if ending {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(record)).into_response())
}

fn no_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_plan_and_bad_values_are_refused() {
        for (action, _) in ACTIONS {
            assert!(plan(action, &ActionParams::default()).is_ok(), "{action}");
        }
        assert!(matches!(
            plan("melt-cpu", &ActionParams::default()),
            Err(StackControlError::UnknownAction(_))
        ));
        let too_long = ActionParams {
            for_s: Some(4000.0),
            ..ActionParams::default()
        };
        assert!(matches!(
            plan("slow-redis", &too_long),
            Err(StackControlError::InvalidParams(_))
        ));
        let negative = ActionParams {
            down_for_s: Some(-1.0),
            ..ActionParams::default()
        };
        assert!(plan("crash-redis", &negative).is_err());
        let Ok(Plan::Fault { hold, by_hand, .. }) = plan("restart-redis", &ActionParams::default())
        else {
            panic!("restart-redis is a fault");
        };
        assert_eq!((hold, by_hand), (Duration::from_secs(45), false));
        let Ok(Plan::Fault { by_hand, .. }) = plan("crash-redis", &ActionParams::default()) else {
            panic!("crash-redis is a fault");
        };
        assert!(by_hand);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
