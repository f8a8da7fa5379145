//! The connection supervisor and the [`Redis`] handle in front of it.
//!
//! Ownership: the supervisor task is the only writer of the shared
//! connection slot and of the state; commands only read the slot (a clone of
//! a multiplexed connection is a cheap handle onto the same socket). A
//! command that sees its connection fail wakes the supervisor through a
//! `Notify`, which checks the connection with a `PING` at once instead of
//! waiting for its next health tick.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use holdfast_core::{Deadline, metric_names};
use holdfast_resilience::Tasks;
use holdfast_resilience::backoff::Backoff;
use holdfast_resilience::breaker::{BreakerConfig, CircuitBreaker};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Connection};
use crate::connect::{Sentinel, TlsOptions, describe, open_client};
use crate::error::RedisError;

/// How to reach Redis and how hard to try.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://` for TLS,
    /// `redis+sentinel://…` or `redis+cluster://…`.
    pub url: String,
    /// TLS settings of a `rediss://` URL.
    pub tls: TlsOptions,
    /// `false` runs without Redis: every call fails with [`RedisError::Disabled`].
    pub enabled: bool,
    /// Limit on establishing one connection (TCP, handshake, AUTH).
    pub connect_timeout: Duration,
    /// Default deadline of one command.
    pub command_timeout: Duration,
    /// Delay between reconnect attempts (full jitter, capped; default 50 ms
    /// doubling to 500 ms, so a returning Redis is used again within about
    /// half a second; a refused connection costs Redis next to nothing).
    pub reconnect_backoff: Backoff,
    /// How often a ready connection is checked with `PING`.
    pub health_interval: Duration,
    /// Reconnecting this long without success declares the connection
    /// `stuck` and starts over with a fresh client and backoff.
    pub stuck_after: Duration,
    /// The breaker in front of every command.
    pub breaker: BreakerConfig,
    /// How many state transitions the history keeps.
    pub history_len: usize,
}

// Hand-written so that the URL's password never reaches a log.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::connect::redact(&self.url))
            .field("tls", &self.tls)
            .field("enabled", &self.enabled)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// The Redis a role connects to unless configured otherwise.
    pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";

    /// Defaults for the given URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: TlsOptions::default(),
            enabled: true,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            reconnect_backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            health_interval: Duration::from_millis(250),
            stuck_after: Duration::from_secs(30),
            breaker: BreakerConfig {
                failure_threshold: 5,
                open_for: Duration::from_millis(500),
                half_open_probes: 1,
                success_to_close: 1,
            },
            history_len: 64,
        }
    }

    /// A configuration that keeps Redis switched off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new("redis://disabled")
        }
    }
}

/// Where the supervisor stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// First connection attempt under way.
    Connecting,
    /// Connected and answering pings.
    Ready,
    /// Lost or never got a connection; retrying with backoff.
    Reconnecting,
    /// Reconnecting made no progress for `stuck_after`; the client was reset.
    Stuck,
    /// Switched off by configuration.
    Disabled,
}

impl ConnState {
    /// The form used in JSON and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Ready => "ready",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Stuck => "stuck",
            ConnState::Disabled => "disabled",
        }
    }

    fn gauge(&self) -> f64 {
        match self {
            ConnState::Connecting => 0.0,
            ConnState::Ready => 1.0,
            ConnState::Reconnecting => 2.0,
            ConnState::Stuck => 3.0,
            ConnState::Disabled => 4.0,
        }
    }
}

/// One state change, as kept in the history.
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    /// When, in unix milliseconds.
    pub at_unix_ms: u64,
    /// State before.
    pub from: ConnState,
    /// State after.
    pub to: ConnState,
    /// Why (`connected`, `auth_failed`, `ping_failed`, ...).
    pub reason: String,
}

/// What `/health` shows about Redis.
#[derive(Clone, Debug, Serialize)]
pub struct RedisHealth {
    /// Current state.
    pub state: ConnState,
    /// When the current state began, unix milliseconds.
    pub since_unix_ms: u64,
    /// The last failure seen: the address and the cause
    /// (`db.example:6380: TLS: the server's certificate is not valid for
    /// this host name: …`).
    pub last_error: Option<String>,
    /// Reconnect attempts since start.
    pub reconnect_attempts: u64,
    /// The breaker's state (`closed`, `open`, `half_open`).
    pub breaker: &'static str,
    /// Most recent transitions, oldest first.
    pub history: Vec<Transition>,
}

struct Status {
    state: ConnState,
    since_unix_ms: u64,
    last_error: Option<String>,
    reconnect_attempts: u64,
    history: VecDeque<Transition>,
}

struct Inner {
    cfg: RedisConfig,
    /// `host:port` it connects to, for messages; with Sentinel, the primary
    /// found last.
    target: RwLock<String>,
    /// Where the primary is asked for, with a `redis+sentinel://` URL.
    sentinel: Option<Sentinel>,
    /// The seed nodes, with a `redis+cluster://` URL.
    cluster: Option<Cluster>,
    /// Which seed node [`Redis::connection_info`] names next (cluster).
    next_seed: std::sync::atomic::AtomicUsize,
    /// Set by a command that met `READONLY` (a primary demoted under it),
    /// or by a sentinel's `+switch-master` notice: the supervisor then
    /// connects again, to the primary found anew.
    readonly: std::sync::atomic::AtomicBool,
    /// The address of the last connection that worked, to tell a failover.
    connected_to: RwLock<Option<String>>,
    /// Replaced when the supervisor resets a stuck connection.
    client: RwLock<Option<redis::Client>>,
    /// The shared connection; `None` while there is none.
    conn: RwLock<Option<Connection>>,
    status: Mutex<Status>,
    state_tx: watch::Sender<ConnState>,
    breaker: CircuitBreaker,
    /// Commands that saw their connection fail wake the supervisor early.
    wake: Notify,
    /// Scripts to load after every connect, so pipelined EVALSHA works.
    scripts: Mutex<Vec<redis::Script>>,
    /// The owner of the supervisor and of every task spawned on this
    /// handle's behalf; the role that started Redis stops and awaits them.
    tasks: Tasks,
}

/// A cloneable handle onto one supervised Redis connection.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Starts the supervisor and returns at once; the first connection is
    /// made in the background (use [`Redis::wait_ready`] to wait for it).
    /// The supervisor is one of `tasks` (a [`Tasks`], or only a stop token)
    /// and stops when they are asked to stop.
    pub fn start(cfg: RedisConfig, tasks: impl Into<Tasks>) -> Result<Self, RedisError> {
        let tasks = tasks.into();
        let sentinel = if cfg.enabled {
            Sentinel::parse(&cfg.url)?
        } else {
            None
        };
        let cluster = if cfg.enabled {
            Cluster::parse(&cfg.url)?
        } else {
            None
        };
        if let Some(cluster) = &cluster {
            // Settings errors (a TLS file) show at start, not at connect.
            cluster.client(&cfg.tls, cfg.connect_timeout, cfg.command_timeout)?;
        }
        let (client, target) = match (&sentinel, &cluster, cfg.enabled) {
            (_, _, false) => (None, String::new()),
            // The primary is found at each connect.
            (Some(sentinel), _, true) => (None, sentinel.describe()),
            (None, Some(cluster), true) => (None, cluster.describe()),
            (None, None, true) => {
                let (client, target) = open_client(&cfg.url, &cfg.tls)?;
                (Some(client), target)
            }
        };
        let initial = if cfg.enabled {
            ConnState::Connecting
        } else {
            ConnState::Disabled
        };
        let (state_tx, _) = watch::channel(initial);
        let breaker = CircuitBreaker::new("redis", cfg.breaker);
        let inner = Arc::new(Inner {
            client: RwLock::new(client),
            conn: RwLock::new(None),
            status: Mutex::new(Status {
                state: initial,
                since_unix_ms: Deadline::now_unix_ms(),
                last_error: None,
                reconnect_attempts: 0,
                history: VecDeque::with_capacity(cfg.history_len),
            }),
            state_tx,
            breaker,
            wake: Notify::new(),
            scripts: Mutex::new(Vec::new()),
            cfg,
            target: RwLock::new(target),
            sentinel,
            cluster,
            next_seed: std::sync::atomic::AtomicUsize::new(0),
            readonly: std::sync::atomic::AtomicBool::new(false),
            connected_to: RwLock::new(None),
            tasks,
        });
        metrics::gauge!(metric_names::REDIS_STATE).set(initial.gauge());
        if inner.cfg.enabled {
            // The supervisor lives until shutdown; it holds the only strong
            // reference besides the handles, so nothing else must stop it.
            let shutdown = inner.tasks.stop_token();
            inner.tasks.spawn(supervise(inner.clone(), shutdown));
            if inner.sentinel.is_some() {
                inner.tasks.spawn(watch_switch_master(inner.clone()));
            }
        }
        Ok(Self { inner })
    }

    /// A handle that is switched off: every call fails with `Disabled`.
    pub fn disabled() -> Self {
        Self::start(RedisConfig::disabled(), Tasks::new())
            .expect("a disabled configuration opens no client")
    }

    /// The owner of the tasks started on this handle's behalf: work that
    /// exists only to bring something to Redis (a cache's deferred
    /// invalidations) is spawned here, so the role stops and awaits it
    /// with the supervisor.
    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.cfg
    }

    /// Whether Redis is enabled at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.cfg.enabled
    }

    /// The current connection state.
    pub fn state(&self) -> ConnState {
        *self.inner.state_tx.borrow()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<ConnState> {
        self.inner.state_tx.subscribe()
    }

    /// Waits until the connection is ready; `false` after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == ConnState::Ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// State, last error, breaker and history for `/health`.
    pub fn health(&self) -> RedisHealth {
        let status = self.inner.status.lock().expect("status lock poisoned");
        RedisHealth {
            state: status.state,
            since_unix_ms: status.since_unix_ms,
            last_error: status.last_error.clone(),
            reconnect_attempts: status.reconnect_attempts,
            breaker: self.inner.breaker.state().as_str(),
            history: status.history.iter().cloned().collect(),
        }
    }

    /// The breaker in front of every command.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// Registers a script to load on every (re)connect, so that pipelines may
    /// call it by `EVALSHA` without a `NOSCRIPT` round trip.
    pub fn register_script(&self, script: &redis::Script) {
        {
            let mut scripts = self.inner.scripts.lock().expect("scripts lock poisoned");
            if scripts.iter().any(|s| s.get_hash() == script.get_hash()) {
                return;
            }
            scripts.push(script.clone());
        }
        if let Some(conn) = self.inner.conn.read().expect("conn lock poisoned").clone() {
            let script = script.clone();
            let timeout = self.inner.cfg.command_timeout;
            let tasks = self.inner.tasks.clone();
            // Bounded by the command timeout and by the owner's stop; a
            // script not loaded now is loaded on the next connect.
            self.inner.tasks.spawn(async move {
                let mut conn = conn;
                tokio::select! {
                    _ = tokio::time::timeout(timeout, script.load_async(&mut conn)) => {}
                    () = tasks.stopping() => {}
                }
            });
        }
    }

    fn unavailable(&self) -> RedisError {
        if !self.inner.cfg.enabled {
            return RedisError::Disabled;
        }
        let status = self.inner.status.lock().expect("status lock poisoned");
        RedisError::Unavailable {
            reason: status
                .last_error
                .clone()
                .unwrap_or_else(|| status.state.as_str().to_owned()),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Runs `f` on the shared connection under `timeout`, through the breaker.
    ///
    /// This is the one path every command takes: it fails at once when there
    /// is no connection or the breaker is open, and tells the supervisor when
    /// the connection itself failed.
    pub async fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_limited(timeout, false, f).await
    }

    /// [`Redis::run`] for a caller with a deadline of its own: the command
    /// gets `timeout` or what is left before `deadline`, whichever is less.
    ///
    /// When the caller's deadline is what runs out, the error is
    /// [`RedisError::CallerDeadline`] and neither the breaker nor the
    /// supervisor hears of it: a caller in a hurry says nothing about
    /// Redis, and must never make it look down for every other caller.
    /// Only a command that exceeded Redis's own budget (`timeout`) counts
    /// as a Redis failure.
    pub async fn run_before<T, F, Fut>(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
        f: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(RedisError::CallerDeadline);
        }
        if left < timeout {
            self.run_limited(left, true, f).await
        } else {
            self.run_limited(timeout, false, f).await
        }
    }

    /// [`Redis::script`] for a caller with a deadline of its own (see
    /// [`Redis::run_before`]).
    pub async fn script_before<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        self.run_before(deadline, timeout, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs `f` under `timeout`; `caller_limited` says that the timeout is
    /// the caller's deadline rather than Redis's budget.
    async fn run_limited<T, F, Fut>(
        &self,
        timeout: Duration,
        caller_limited: bool,
        f: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.inner.conn.read().expect("conn lock poisoned").clone();
        let Some(conn) = conn else {
            return Err(self.unavailable());
        };
        let permit = self
            .inner
            .breaker
            .try_acquire()
            .map_err(|open| RedisError::CircuitOpen {
                retry_after: open.retry_after,
            })?;
        if caller_limited && permit.is_probe() {
            // The breaker's probe goes to a caller with Redis's whole
            // budget: a caller in a hurry could only leave it undecided and
            // keep the breaker half-open. Handing it back frees the slot.
            drop(permit);
            return Err(RedisError::CircuitOpen {
                retry_after: Duration::from_millis(100),
            });
        }
        match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(value)) => {
                permit.success();
                Ok(value)
            }
            Ok(Err(err)) => {
                let err = RedisError::from_redis(err);
                if matches!(&err, RedisError::Server(e) if e.code() == Some("READONLY")) {
                    self.inner.note_readonly();
                }
                if matches!(err, RedisError::Connection(_)) {
                    permit.failure();
                    self.inner.wake.notify_one();
                    metrics::counter!(metric_names::REDIS_COMMAND_ERRORS, "kind" => "connection")
                        .increment(1);
                } else {
                    // The server answered, so the connection is healthy.
                    permit.success();
                }
                Err(err)
            }
            Err(_) if caller_limited => {
                // Neither a success nor a failure of Redis: the permit
                // goes back untold.
                drop(permit);
                Err(RedisError::CallerDeadline)
            }
            Err(_) => {
                permit.failure();
                self.inner.wake.notify_one();
                metrics::counter!(metric_names::REDIS_COMMAND_ERRORS, "kind" => "timeout")
                    .increment(1);
                Err(RedisError::Timeout(timeout))
            }
        }
    }

    /// Runs one command under the default command timeout.
    pub async fn cmd<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        self.run(self.inner.cfg.command_timeout, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs a pipeline under the given timeout.
    pub async fn pipe<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        self.run(timeout, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// Invokes a script (loading it on `NOSCRIPT`) under the given timeout.
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        self.run(timeout, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// A connection of its own for blocking reads, whose response timeout
    /// (`None`: no limit) must exceed the longest block it will issue.
    /// Fails at once unless the supervisor is ready.
    pub async fn dedicated(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<Connection, RedisError> {
        if self.state() != ConnState::Ready {
            return Err(self.unavailable());
        }
        if let Some(cluster) = &self.inner.cluster {
            // A cluster connection of its own (one socket per node), with
            // the response timeout this reader needs.
            let response_timeout = response_timeout.unwrap_or(Duration::from_secs(24 * 3600));
            let client = cluster.client(
                &self.inner.cfg.tls,
                self.inner.cfg.connect_timeout,
                response_timeout,
            )?;
            return match tokio::time::timeout(
                self.inner.cfg.connect_timeout * (1 + cluster.len() as u32),
                client.get_async_connection(),
            )
            .await
            {
                Ok(Ok(conn)) => Ok(Connection::Cluster(conn)),
                Ok(Err(err)) => {
                    self.inner.wake.notify_one();
                    Err(RedisError::from_redis(err))
                }
                Err(_) => Err(RedisError::Timeout(self.inner.cfg.connect_timeout)),
            };
        }
        let client = self
            .inner
            .client
            .read()
            .expect("client lock poisoned")
            .clone()
            .ok_or(RedisError::Disabled)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.cfg.connect_timeout))
            .set_response_timeout(response_timeout);
        match tokio::time::timeout(
            self.inner.cfg.connect_timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(Connection::Single(conn)),
            Ok(Err(err)) => {
                self.inner.wake.notify_one();
                Err(RedisError::from_redis(err))
            }
            Err(_) => Err(RedisError::Timeout(self.inner.cfg.connect_timeout)),
        }
    }

    /// Whether the URL names a Redis Cluster (`redis+cluster://`).
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// Every key matching the `SCAN MATCH` pattern, up to `limit`: on the
    /// one server, or on every primary of a cluster; keys may repeat.
    pub async fn scan(
        &self,
        pattern: &str,
        count: usize,
        limit: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, RedisError> {
        self.run(timeout, |mut conn| async move {
            conn.scan_all(pattern, count, limit).await
        })
        .await
    }

    /// `INFO` (or `INFO section`) of the one server, or of one primary of
    /// a cluster, as text.
    pub async fn info(&self, section: Option<&str>) -> Result<String, RedisError> {
        let mut cmd = redis::cmd("INFO");
        if let Some(section) = section {
            cmd.arg(section);
        }
        let cmd = &cmd;
        self.run(self.inner.cfg.command_timeout, |mut conn| async move {
            let text: String = redis::from_redis_value(conn.on_any_node(cmd).await?)?;
            Ok(text)
        })
        .await
    }

    /// Tells the supervisor that a dedicated connection failed, so it checks
    /// the shared one now rather than at its next tick.
    pub fn report_connection_failure(&self) {
        self.inner.wake.notify_one();
    }

    /// Tells the supervisor what a dedicated connection's command met: a
    /// connection failure, or (with Sentinel) `READONLY` from a primary
    /// that was demoted, after which it connects to the primary anew.
    pub fn report_error(&self, err: &RedisError) {
        if matches!(err, RedisError::Server(e) if e.code() == Some("READONLY")) {
            self.inner.note_readonly();
        } else if matches!(err, RedisError::Connection(_) | RedisError::Timeout(_)) {
            self.inner.wake.notify_one();
        }
    }

    /// How the handle connects now: the address (for Sentinel, the primary
    /// found last) with the TLS settings, for a connection of another kind
    /// (a RESP3 subscriber). `None` before the first connect with Sentinel,
    /// or when disabled.
    pub fn connection_info(&self) -> Option<redis::ConnectionInfo> {
        if let Some(cluster) = &self.inner.cluster {
            // Any node hears a cluster's PUBLISH: each call names the next
            // seed node, so a subscriber that lost one tries another.
            let index = self
                .inner
                .next_seed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return open_client(&cluster.node_url(index), &self.inner.cfg.tls)
                .ok()
                .map(|(client, _)| client.get_connection_info().clone());
        }
        self.inner
            .client
            .read()
            .expect("client lock poisoned")
            .as_ref()
            .map(|client| client.get_connection_info().clone())
    }
}

impl Inner {
    /// A command met `READONLY`: with Sentinel the server was demoted under
    /// us, so connect again to the primary. With a plain URL there is no
    /// other server to go to, and reconnecting would only flap.
    fn note_readonly(&self) {
        if self.sentinel.is_some() {
            self.readonly
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    fn transition(&self, to: ConnState, reason: &str) {
        let mut status = self.status.lock().expect("status lock poisoned");
        if status.state == to {
            return;
        }
        let from = status.state;
        let now = Deadline::now_unix_ms();
        while !status.history.is_empty() && status.history.len() >= self.cfg.history_len {
            status.history.pop_front();
        }
        status.history.push_back(Transition {
            at_unix_ms: now,
            from,
            to,
            reason: reason.to_owned(),
        });
        status.state = to;
        status.since_unix_ms = now;
        drop(status);
        self.state_tx.send_replace(to);
        metrics::gauge!(metric_names::REDIS_STATE).set(to.gauge());
        if to == ConnState::Ready {
            tracing::info!(from = from.as_str(), reason, "redis connection ready");
        } else {
            tracing::warn!(
                from = from.as_str(),
                to = to.as_str(),
                reason,
                "redis connection state changed"
            );
        }
    }

    /// Counts a failed or lost connection; `detail` (the address and the
    /// cause) becomes `/health`'s `last_error`.
    fn record_error(&self, detail: String) {
        let mut status = self.status.lock().expect("status lock poisoned");
        status.last_error = Some(detail);
        status.reconnect_attempts += 1;
        metrics::counter!(metric_names::REDIS_RECONNECTS).increment(1);
    }

    fn state(&self) -> ConnState {
        *self.state_tx.borrow()
    }

    fn publish_breaker(&self) {
        metrics::gauge!(metric_names::REDIS_BREAKER_STATE).set(self.breaker.state().as_gauge());
    }

    fn target(&self) -> String {
        self.target.read().expect("target lock poisoned").clone()
    }

    /// Connects (finding the primary first, with Sentinel); the connection
    /// and why it was made (`connected`, or `failover: A -> B` when Sentinel
    /// named another primary than the last one), or why it failed: a code
    /// and a sentence naming the address.
    async fn connect(&self) -> Result<(Connection, String), (&'static str, String)> {
        let mut reason = "connected".to_owned();
        if let Some(cluster) = &self.cluster {
            let target = self.target();
            let fail = |err: redis::RedisError| describe(&err, &target);
            let client = cluster
                .client(
                    &self.cfg.tls,
                    self.cfg.connect_timeout,
                    self.cfg.command_timeout.max(Duration::from_secs(5)),
                )
                .map_err(|err| ("config", err.to_string()))?;
            let mut conn = Connection::Cluster(client.get_async_connection().await.map_err(fail)?);
            // One node answering is enough: a slot whose primary is down
            // fails its own commands until a replica takes over, and the
            // other slots go on.
            conn.on_any_node(&redis::cmd("PING")).await.map_err(fail)?;
            let scripts = self.scripts.lock().expect("scripts lock poisoned").clone();
            for script in scripts {
                if let Err(err) = script.load_async(&mut conn).await {
                    tracing::debug!(%err, "script not preloaded");
                }
            }
            return Ok((conn, reason));
        }
        if let Some(sentinel) = &self.sentinel {
            let (host, port) = sentinel
                .resolve(&self.cfg.tls, self.cfg.connect_timeout)
                .await?;
            let (client, target) = open_client(&sentinel.primary_url(&host, port), &self.cfg.tls)
                .map_err(|err| ("config", err.to_string()))?;
            *self.target.write().expect("target lock poisoned") = target;
            *self.client.write().expect("client lock poisoned") = Some(client);
        }
        let client = self
            .client
            .read()
            .expect("client lock poisoned")
            .clone()
            .expect("the supervisor runs only when enabled");
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.connect_timeout))
            // Our own deadlines are shorter; this only stops a lost reply
            // from pinning a request slot forever.
            .set_response_timeout(Some(self.cfg.command_timeout.max(Duration::from_secs(5))));
        let target = self.target();
        let fail = |err: redis::RedisError| describe(&err, &target);
        let mut conn = Connection::Single(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(fail)?,
        );
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(fail)?;
        if self.sentinel.is_some() {
            // A server Sentinel has just demoted may still answer: only a
            // primary will do.
            let role: redis::Value = redis::cmd("ROLE")
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            let is_primary = matches!(&role, redis::Value::Array(parts)
                if matches!(parts.first(), Some(redis::Value::BulkString(r)) if r == b"master"));
            if !is_primary {
                return Err((
                    "not_primary",
                    format!("{target}: Sentinel named a server that is not a primary (yet)"),
                ));
            }
        }
        let scripts = self.scripts.lock().expect("scripts lock poisoned").clone();
        for script in scripts {
            // Preloading only saves a NOSCRIPT round trip; a server that
            // refuses SCRIPT LOAD (an ACL) still runs scripts by EVAL.
            if let Err(err) = script.load_async(&mut conn).await {
                tracing::debug!(%err, "script not preloaded");
            }
        }
        self.readonly
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let before = self
            .connected_to
            .write()
            .expect("connected_to lock poisoned")
            .replace(target.clone());
        if let Some(before) = before
            && before != target
        {
            reason = format!("failover: {before} -> {target}");
        }
        Ok((conn, reason))
    }
}

/// Keeps one connection alive until shutdown; see the module docs.
async fn supervise(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut attempt: u32 = 0;
    let mut failing_since: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // With Sentinel each sentinel may take a connect timeout before the
        // next is asked, then the primary its own.
        let bound = inner.cfg.connect_timeout
            * (1 + inner.sentinel.as_ref().map_or(0, Sentinel::count) as u32)
            + inner.cfg.connect_timeout * inner.cluster.as_ref().map_or(0, Cluster::len) as u32;
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(bound, inner.connect()) => r,
        };
        match connected {
            Ok(Ok((conn, reason))) => {
                *inner.conn.write().expect("conn lock poisoned") = Some(conn.clone());
                inner.breaker.reset();
                inner.publish_breaker();
                if reason != "connected" {
                    tracing::warn!("redis: {reason}");
                }
                inner.transition(ConnState::Ready, &reason);
                let connected_at = Instant::now();
                let reason = watch_connection(&inner, conn, &shutdown).await;
                *inner.conn.write().expect("conn lock poisoned") = None;
                if shutdown.is_cancelled() {
                    return;
                }
                inner.record_error(format!("{}: {reason}", inner.target()));
                inner.transition(ConnState::Reconnecting, reason);
                failing_since = Some(Instant::now());
                if connected_at.elapsed() >= Duration::from_secs(1) {
                    // A connection that lived a while: reconnect at once.
                    attempt = 0;
                    continue;
                }
                // A server that accepts and then drops connections would
                // otherwise be hammered in a tight loop: back off as after a
                // failed connect.
            }
            Ok(Err((code, detail))) => {
                // The first failure of a run says what is wrong; the
                // retries after it stay quiet.
                if attempt == 0 {
                    tracing::warn!(code, "redis connect failed: {detail}");
                } else {
                    tracing::debug!(code, "redis connect failed: {detail}");
                }
                inner.record_error(detail);
                on_connect_failure(&inner, code, &mut attempt, &mut failing_since);
            }
            Err(_) => {
                inner.record_error(format!(
                    "{}: no connection within {:?} (connect timeout)",
                    inner.target(),
                    inner.cfg.connect_timeout
                ));
                on_connect_failure(&inner, "connect_timeout", &mut attempt, &mut failing_since);
            }
        }
        let delay = inner.cfg.reconnect_backoff.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn on_connect_failure(
    inner: &Inner,
    code: &str,
    attempt: &mut u32,
    failing_since: &mut Option<Instant>,
) {
    let since = *failing_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= inner.cfg.stuck_after {
        // A loop that has not connected for this long may be wedged on
        // something the client cached (a resolved address, a TLS session):
        // start over with a fresh client and a fresh backoff.
        if inner.sentinel.is_none()
            && inner.cluster.is_none()
            && let Ok((client, _)) = open_client(&inner.cfg.url, &inner.cfg.tls)
        {
            *inner.client.write().expect("client lock poisoned") = Some(client);
        }
        *attempt = 0;
        *failing_since = Some(Instant::now());
        inner.transition(ConnState::Stuck, "no_progress");
    } else if inner.state() != ConnState::Stuck {
        inner.transition(ConnState::Reconnecting, code);
    }
}

/// Listens for the sentinels' `+switch-master` notices (one sentinel at a
/// time, the next when it fails) and, when one names a new address for
/// our master, sends the supervisor to it at once, without waiting for the
/// old primary to fail or to answer `READONLY`.
async fn watch_switch_master(inner: Arc<Inner>) {
    use futures_util::StreamExt;
    let Some(sentinel) = inner.sentinel.clone() else {
        return;
    };
    let urls = sentinel.sentinel_urls();
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0u32;
    for url in urls.iter().cycle() {
        let listened = async {
            let (client, _) = open_client(url, &inner.cfg.tls).ok()?;
            let mut pubsub =
                tokio::time::timeout(inner.cfg.connect_timeout, client.get_async_pubsub())
                    .await
                    .ok()?
                    .ok()?;
            pubsub.subscribe("+switch-master").await.ok()?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                // `<master> <old-ip> <old-port> <new-ip> <new-port>`
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                let parts: Vec<&str> = text.split_whitespace().collect();
                if parts.len() == 5 && parts[0] == sentinel.master() {
                    let new = format!("{}:{}", parts[3], parts[4]);
                    if new != inner.target() {
                        tracing::warn!(from = %inner.target(), to = %new, "sentinel: +switch-master");
                        inner
                            .readonly
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                        inner.wake.notify_one();
                    }
                }
            }
            Some(())
        };
        let subscribed_at = Instant::now();
        tokio::select! {
            () = inner.tasks.stopping() => return,
            _ = listened => {}
        }
        if subscribed_at.elapsed() >= Duration::from_secs(10) {
            // A subscription that lived a while: try again at once.
            attempt = 0;
        }
        let delay = backoff.delay(attempt);
        attempt = attempt.saturating_add(1).min(8);
        tokio::select! {
            () = inner.tasks.stopping() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Returns why the connection is considered lost, or when shutdown begins.
async fn watch_connection(
    inner: &Inner,
    conn: Connection,
    shutdown: &CancellationToken,
) -> &'static str {
    let ping_timeout = inner.cfg.health_interval.max(Duration::from_millis(200)) * 2;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return "shutdown",
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(inner.cfg.health_interval) => {}
        }
        if inner
            .readonly
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return "readonly";
        }
        let mut c = conn.clone();
        // On a cluster, one node: see `Inner::connect`.
        let ping = tokio::time::timeout(ping_timeout, async move {
            c.on_any_node(&redis::cmd("PING")).await.map(|_| ())
        })
        .await;
        match ping {
            Ok(Ok(())) => inner.publish_breaker(),
            Ok(Err(err)) if describe(&err, &inner.target()).0 == "auth_failed" => {
                return "auth_failed";
            }
            Ok(Err(_)) => return "ping_failed",
            Err(_) => return "ping_timeout",
        }
    }
}
