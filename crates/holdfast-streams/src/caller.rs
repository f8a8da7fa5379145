//! The calling side: enqueue, wait for the reply, or enqueue a job.
//!
//! One reader task per caller reads the caller's reply stream with
//! `XREAD BLOCK` on a dedicated connection and hands each reply to the
//! waiter registered under its request id. Waiters are registered before the
//! request is written, so a fast reply can never arrive unobserved. A
//! keep-alive task refreshes the reply stream's TTL, so a dead caller's
//! stream expires by itself, and trims replies that were already read.
//!
//! Enqueues are sent one by one on the shared multiplexed connection; under
//! load its driver already coalesces queued commands into one write, which
//! measured faster than a batching task of our own (see docs/benchmarks.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{
    Deadline, Durability, Envelope, Keys, Kind, Reply, RequestId, Topic, metric_names,
};
use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::Tasks;
use holdfast_resilience::backoff::Backoff;
use holdfast_resilience::budget::RetryBudget;
use redis::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::admission::{self, DrainEstimate, Refusal};
use crate::meters::CallMeters;
use crate::scripts;
use crate::value;

/// Settings of one caller instance.
#[derive(Clone, Debug)]
pub struct CallerConfig {
    /// Key layout.
    pub keys: Keys,
    /// This caller's id; names its reply stream. Unique per process.
    pub caller_id: String,
    /// Partitions per topic (must match the workers').
    pub partitions: u16,
    /// TTL of the reply stream, refreshed every third of it.
    pub reply_ttl: Duration,
    /// How long a blocking read of the reply stream waits.
    pub block: Duration,
    /// How long a job's record (status, result) is kept.
    pub job_ttl: Duration,
    /// Per-topic limit on backlog (group lag plus pending); `None` is no limit.
    pub backlog_limit: Option<u64>,
    /// How often the backlog of watched topics is read.
    pub backlog_refresh: Duration,
    /// Refuse at once (`CallError::Overloaded`) a request of a watched
    /// topic that would wait longer for a worker than its deadline allows
    /// (see the `admission` module).
    pub admission: bool,
    /// With admission, the longest a call (request/reply) may wait for a
    /// worker whatever its deadline; jobs are held to their deadline
    /// alone. `None`: calls too.
    pub max_queue_wait: Option<Duration>,
    /// How long the enqueue of a request may go on retrying, whatever its
    /// deadline: no attempt starts past it (one under way ends by its own
    /// timeout, the command timeout, plus the durability wait if any), so a
    /// job whose deadline may be an hour away is refused with a Redis error
    /// rather than held while Redis fails over. A call's own deadline
    /// bounds it when shorter.
    pub enqueue_budget: Duration,
    /// Longest wait for replicas or the disk after an enqueue that asks
    /// for durability (`WAIT`, `WAITAOF`).
    pub durability_timeout: Duration,
}

impl CallerConfig {
    /// The longest an enqueue takes unless configured otherwise.
    pub const DEFAULT_ENQUEUE_BUDGET: Duration = Duration::from_millis(1500);

    /// The longest a call waits for a worker unless configured otherwise.
    pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_millis(500);

    /// Defaults with a fresh, unique caller id.
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            caller_id: format!("{}-{}", std::process::id(), RequestId::new()),
            partitions: Topic::DEFAULT_PARTITIONS,
            reply_ttl: Duration::from_secs(60),
            block: Duration::from_secs(2),
            job_ttl: Duration::from_secs(24 * 3600),
            backlog_limit: None,
            backlog_refresh: Duration::from_millis(200),
            admission: true,
            max_queue_wait: Some(Self::DEFAULT_MAX_QUEUE_WAIT),
            durability_timeout: Duration::from_secs(1),
            enqueue_budget: Self::DEFAULT_ENQUEUE_BUDGET,
        }
    }
}

/// Options of one call or job.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// When the caller stops waiting and the worker stops caring.
    pub deadline: Deadline,
    /// Media type of the body.
    pub content_type: String,
    /// W3C trace context to carry to the worker when the current span is
    /// not recorded by an OpenTelemetry layer; when it is, the entry carries
    /// the current span's context instead (whose parent this usually is).
    pub traceparent: Option<String>,
    /// Key for exactly-once effects in the handler.
    pub idempotency_key: Option<String>,
    /// How durable the request must be before it counts as queued.
    pub durability: Durability,
}

impl CallOptions {
    /// JSON body, deadline `timeout` from now.
    pub fn json(timeout: Duration) -> Self {
        Self {
            deadline: Deadline::after(timeout),
            content_type: "application/json".into(),
            traceparent: None,
            idempotency_key: None,
            durability: Durability::None,
        }
    }
}

/// Why a call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The topic's backlog is over its limit; the request was not queued.
    #[error("topic backlog {backlog} is over its limit {limit}")]
    Backlog {
        /// Backlog seen.
        backlog: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Redis could not take the request.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The deadline passed before a reply arrived. The request may still run.
    #[error("no reply before the deadline")]
    DeadlineExceeded,
    /// The topic's queue is longer than the request's deadline allows:
    /// nothing was queued.
    #[error(
        "the request would wait about {:?} for a worker and has {:?} left",
        .0.wait,
        .0.remaining
    )]
    Overloaded(Refusal),
    /// The caller is shutting down.
    #[error("caller is shutting down")]
    ShuttingDown,
    /// The durability asked for cannot be had from this Redis; nothing
    /// was queued.
    #[error("{0}")]
    Durability(String),
}

/// A job's record, as kept for `job_ttl`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobRecord {
    /// `queued`, `done`, `failed`, `expired` or `dead`.
    pub status: String,
    /// Result body when done (lossy UTF-8 is the caller's business; bytes here).
    #[serde(skip)]
    pub result: Option<Bytes>,
    /// Error code when failed or dead.
    pub code: Option<String>,
    /// Error message when failed or dead.
    pub message: Option<String>,
    /// The durability it reached when queued, when one was asked for.
    pub durability: Option<String>,
    /// Worker that finished it.
    pub worker: Option<String>,
}

type Waiters = Mutex<HashMap<RequestId, oneshot::Sender<Reply>>>;

struct Backlog {
    topic: Topic,
    value: AtomicU64,
    /// The topic's drain, for admission.
    estimate: Mutex<DrainEstimate>,
}

struct Inner {
    redis: Redis,
    cfg: CallerConfig,
    reply_key: String,
    waiters: Waiters,
    budget: RetryBudget,
    backlogs: Mutex<Vec<Arc<Backlog>>>,
    /// Id of the last reply read: replies up to it may be trimmed. Stream
    /// ids come from the server's clock, so trimming by them is safe from
    /// clock skew between this host and Redis.
    last_read: Mutex<Option<String>>,
    /// Whether the reply reader's last read worked; a caller whose replies
    /// cannot be read must not say it is ready.
    reading: std::sync::atomic::AtomicBool,
    /// What this Redis offers for `fsync`, and when that was read.
    fsync_support: Mutex<Option<(Instant, FsyncSupport)>>,
    /// Idle connections of their own for the waits of durable enqueues
    /// (`WAIT` holds its connection): opening one per request costs a
    /// connect, and on a cluster a connect to every node.
    wait_conns: Mutex<Vec<(Instant, holdfast_redis::Connection)>>,
    /// Partitions (by stream key and level) whose last wait fell short of
    /// the level asked (no replica, say, after a failover), with when to wait again:
    /// until then their enqueues report the level they reach without
    /// waiting, rather than each hold a connection for the whole wait.
    short_of_level: Mutex<HashMap<String, Instant>>,
    /// Per-topic metric handles, made on a topic's first call.
    meters: RwLock<HashMap<Topic, Arc<CallMeters>>>,
    in_flight_gauge: metrics::Gauge,
    /// The owner of the reader, the keep-alive and the backlog watchers;
    /// they end when it asks them to stop, and it awaits them.
    tasks: Tasks,
}

/// How long enqueues on a partition go without waiting after a wait fell
/// short of its level.
const SHORT_OF_LEVEL_PAUSE: Duration = Duration::from_secs(1);

/// Most idle connections kept for the waits of durable enqueues.
const MAX_IDLE_WAIT_CONNS: usize = 256;

/// A kept wait connection idle longer than this is dropped, not reused.
const MAX_WAIT_CONN_IDLE: Duration = Duration::from_secs(30);

/// Why a durable enqueue's wait failed: no connection, or a command on it.
enum WaitError {
    Redis(RedisError),
    Command(redis::RedisError),
}

impl From<redis::RedisError> for WaitError {
    fn from(err: redis::RedisError) -> Self {
        WaitError::Command(err)
    }
}

/// Sends calls and jobs. Cheap to clone; background tasks stop on shutdown.
#[derive(Clone)]
pub struct Caller {
    inner: Arc<Inner>,
}

/// Removes a waiter if the call ends without a reply (deadline, error, drop).
struct WaiterGuard<'a> {
    inner: &'a Inner,
    id: RequestId,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .waiters
            .lock()
            .expect("waiters lock poisoned")
            .remove(&self.id);
        self.inner.in_flight_gauge.decrement(1.0);
    }
}

impl Caller {
    /// Starts the reply reader and the keep-alive task as two of `tasks`
    /// (a [`Tasks`], or only a stop token); they stop when the tasks are
    /// asked to stop.
    pub fn start(redis: Redis, cfg: CallerConfig, tasks: impl Into<Tasks>) -> Self {
        let tasks = tasks.into();
        let reply_key = cfg.keys.reply_stream(&cfg.caller_id);
        // Loaded on every (re)connect, so EVALSHA rarely meets NOSCRIPT.
        redis.register_script(&scripts::ENQUEUE);
        redis.register_script(&scripts::ENQUEUE_CALL);
        let inner = Arc::new(Inner {
            redis,
            reply_key,
            waiters: Mutex::new(HashMap::new()),
            budget: RetryBudget::new(0.2, 10, Duration::from_secs(10)),
            backlogs: Mutex::new(Vec::new()),
            last_read: Mutex::new(None),
            reading: std::sync::atomic::AtomicBool::new(false),
            fsync_support: Mutex::new(None),
            wait_conns: Mutex::new(Vec::new()),
            short_of_level: Mutex::new(HashMap::new()),
            meters: RwLock::new(HashMap::new()),
            in_flight_gauge: metrics::gauge!(metric_names::CALLS_IN_FLIGHT),
            tasks,
            cfg,
        });
        // With Redis switched off every call fails at once; there is
        // nothing to read or keep alive.
        if inner.redis.is_enabled() {
            // The reader owns the blocking connection; it ends on shutdown.
            inner.tasks.spawn(read_replies(inner.clone()));
            // Keeps the reply stream's TTL fresh; ends on shutdown.
            inner.tasks.spawn(keep_alive(inner.clone()));
        }
        Self { inner }
    }

    /// The key of this caller's reply stream.
    pub fn reply_key(&self) -> &str {
        &self.inner.reply_key
    }

    /// The Redis handle underneath.
    pub fn redis(&self) -> &Redis {
        &self.inner.redis
    }

    /// Whether replies are being read: the reader is connected and its last
    /// read, if any, worked. While it is not, calls can only time out.
    pub fn is_reading(&self) -> bool {
        self.inner.reading.load(Ordering::Relaxed)
    }

    /// Calls waiting for a reply right now.
    pub fn in_flight(&self) -> usize {
        self.inner
            .waiters
            .lock()
            .expect("waiters lock poisoned")
            .len()
    }

    /// Starts watching a topic's backlog so calls beyond the configured limit,
    /// or that could not be answered before their deadline (admission),
    /// are refused before they are queued.
    pub fn watch_backlog(&self, topic: &Topic) {
        if self.inner.cfg.backlog_limit.is_none() && !self.inner.cfg.admission {
            return;
        }
        let backlog = Arc::new(Backlog {
            topic: topic.clone(),
            value: AtomicU64::new(0),
            estimate: Mutex::new(DrainEstimate::default()),
        });
        self.inner
            .backlogs
            .lock()
            .expect("backlogs lock poisoned")
            .push(backlog.clone());
        let inner = self.inner.clone();
        // Refreshes one topic's backlog figure until shutdown.
        self.inner.tasks.spawn(async move {
            let admin = Admin::new(
                inner.redis.clone(),
                inner.cfg.keys.clone(),
                inner.cfg.partitions,
            );
            loop {
                if let Ok(stats) = admin.topic_stats(&backlog.topic).await {
                    backlog.value.store(stats.backlog, Ordering::Relaxed);
                    let rate = {
                        let mut estimate = backlog.estimate.lock().expect("estimate lock poisoned");
                        estimate.observe(stats.lag, stats.delivered, Instant::now());
                        estimate.rate()
                    };
                    if let Some(rate) = rate {
                        metrics::gauge!(metric_names::TOPIC_DRAIN_RATE, "topic" => backlog.topic.to_string())
                            .set(rate);
                    }
                    metrics::gauge!(metric_names::TOPIC_BACKLOG, "topic" => backlog.topic.to_string())
                        .set(stats.backlog as f64);
                }
                tokio::select! {
                    _ = inner.tasks.stopping() => return,
                    _ = tokio::time::sleep(inner.cfg.backlog_refresh) => {}
                }
            }
        });
    }

    /// The last backlog figure read for `topic`, if it is watched.
    pub fn backlog(&self, topic: &Topic) -> Option<u64> {
        self.watched(topic).map(|b| b.value.load(Ordering::Relaxed))
    }

    /// The watch of `topic`, if it is watched.
    fn watched(&self, topic: &Topic) -> Option<Arc<Backlog>> {
        self.inner
            .backlogs
            .lock()
            .expect("backlogs lock poisoned")
            .iter()
            .find(|b| &b.topic == topic)
            .cloned()
    }

    /// Refuses a request the topic cannot take: its backlog is over the
    /// limit, or the request would wait longer for a worker than its
    /// deadline allows.
    fn admit(
        &self,
        topic: &Topic,
        deadline: &Deadline,
        kind: Kind,
    ) -> Result<Option<Arc<Backlog>>, CallError> {
        let Some(watched) = self.watched(topic) else {
            return Ok(None);
        };
        let backlog = watched.value.load(Ordering::Relaxed);
        if let Some(limit) = self.inner.cfg.backlog_limit
            && backlog >= limit
        {
            return Err(CallError::Backlog { backlog, limit });
        }
        if self.inner.cfg.admission {
            let wait = watched
                .estimate
                .lock()
                .expect("estimate lock poisoned")
                .wait(Instant::now());
            let cap = match kind {
                Kind::Call => self.inner.cfg.max_queue_wait,
                Kind::Job => None,
            };
            admission::admit(wait, deadline.remaining(), cap).map_err(CallError::Overloaded)?;
        }
        Ok(Some(watched))
    }

    /// Counts a request queued on a watched topic, for admission.
    fn note_enqueued(watched: Option<Arc<Backlog>>) {
        if let Some(watched) = watched {
            watched
                .estimate
                .lock()
                .expect("estimate lock poisoned")
                .enqueued();
        }
    }

    fn meters(&self, topic: &Topic) -> Arc<CallMeters> {
        if let Some(m) = self
            .inner
            .meters
            .read()
            .expect("meters lock poisoned")
            .get(topic)
        {
            return m.clone();
        }
        self.inner
            .meters
            .write()
            .expect("meters lock poisoned")
            .entry(topic.clone())
            .or_insert_with(|| Arc::new(CallMeters::new(topic)))
            .clone()
    }

    fn partition_of(&self, id: &RequestId) -> u16 {
        // The low bits of a UUIDv7 are random, so this spreads evenly.
        (id.as_uuid().as_u128() % u128::from(self.inner.cfg.partitions.max(1))) as u16
    }

    /// Sends a request and waits for its reply until the deadline.
    pub async fn call(
        &self,
        topic: &Topic,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<Reply, CallError> {
        self.call_reporting(topic, body, opts)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`Caller::call`], with the durability the request reached before it
    /// was handed to a worker.
    pub async fn call_reporting(
        &self,
        topic: &Topic,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<(Reply, Durability), CallError> {
        if self.inner.tasks.is_stopping() {
            return Err(CallError::ShuttingDown);
        }
        let started = Instant::now();
        let watched = match self.admit(topic, &opts.deadline, Kind::Call) {
            Ok(watched) => watched,
            Err(err) => {
                self.meters(topic)
                    .call(err_outcome(&err), started.elapsed());
                return Err(err);
            }
        };
        let id = RequestId::new();
        let (tx, rx) = oneshot::channel();
        self.inner
            .waiters
            .lock()
            .expect("waiters lock poisoned")
            .insert(id, tx);
        self.inner.in_flight_gauge.increment(1.0);
        let _guard = WaiterGuard {
            inner: &self.inner,
            id,
        };
        let deadline = opts.deadline;
        let level = opts.durability;
        let envelope = Envelope {
            id,
            kind: Kind::Call,
            reply_to: Some(self.inner.reply_key.clone()),
            deadline,
            traceparent: crate::trace_context::current_traceparent().or(opts.traceparent),
            content_type: opts.content_type,
            body,
            idempotency_key: opts.idempotency_key,
        };
        // The call's marker only needs to outlive retries of the enqueue.
        let record_ttl = deadline.remaining() + Duration::from_secs(60);
        let reached = match self.enqueue(topic, &envelope, record_ttl, level).await {
            Ok(reached) => {
                Self::note_enqueued(watched);
                reached
            }
            Err(err) => {
                self.meters(topic)
                    .call(err_outcome(&err), started.elapsed());
                return Err(err);
            }
        };
        let result = match tokio::time::timeout(deadline.remaining(), rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::ShuttingDown),
            Err(_) => Err(CallError::DeadlineExceeded),
        };
        let outcome = match &result {
            Ok(reply) => reply.status.as_str(),
            Err(err) => err_outcome(err),
        };
        self.meters(topic).call(outcome, started.elapsed());
        result.map(|reply| (reply, reached))
    }

    /// Queues a job and returns its id once Redis has it.
    pub async fn enqueue_job(
        &self,
        topic: &Topic,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<RequestId, CallError> {
        self.enqueue_job_reporting(topic, body, opts)
            .await
            .map(|(id, _)| id)
    }

    /// [`Caller::enqueue_job`], with the durability the job reached.
    pub async fn enqueue_job_reporting(
        &self,
        topic: &Topic,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<(RequestId, Durability), CallError> {
        let watched = self.admit(topic, &opts.deadline, Kind::Job)?;
        let id = RequestId::new();
        let envelope = Envelope {
            id,
            kind: Kind::Job,
            reply_to: None,
            deadline: opts.deadline,
            traceparent: crate::trace_context::current_traceparent().or(opts.traceparent),
            content_type: opts.content_type,
            body,
            idempotency_key: opts.idempotency_key,
        };
        let reached = self
            .enqueue(topic, &envelope, self.inner.cfg.job_ttl, opts.durability)
            .await?;
        Self::note_enqueued(watched);
        self.meters(topic).job();
        Ok((id, reached))
    }

    /// A job's record, or `None` when unknown or expired.
    pub async fn job(&self, topic: &Topic, id: &RequestId) -> Result<Option<JobRecord>, CallError> {
        let keys = &self.inner.cfg.keys;
        let record_key = keys.request_record(topic, self.partition_of(id), &id.to_string());
        let fields: HashMap<String, Vec<u8>> = self
            .inner
            .redis
            .cmd(redis::cmd("HGETALL").arg(&record_key))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let text = |k: &str| {
            fields
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Ok(Some(JobRecord {
            status: text("status").unwrap_or_else(|| "queued".into()),
            result: fields.get("result").map(|v| Bytes::copy_from_slice(v)),
            code: text("code"),
            message: text("message"),
            durability: text("durability"),
            worker: text("worker"),
        }))
    }

    /// Writes the entry once, retrying transient failures until the
    /// deadline; the marker or record makes a re-sent write a no-op.
    async fn enqueue(
        &self,
        topic: &Topic,
        envelope: &Envelope,
        record_ttl: Duration,
        level: Durability,
    ) -> Result<Durability, CallError> {
        let wait_timeout = self.inner.cfg.durability_timeout;
        let wait_ms = wait_timeout.as_millis() as u64;
        // The command that waits for the level, or the level reached
        // without one.
        let (wait, reached_without_wait) = match level {
            Durability::None => (None, Durability::None),
            Durability::Replicas(n) => {
                let mut wait = redis::cmd("WAIT");
                wait.arg(n).arg(wait_ms);
                (Some(wait), Durability::None)
            }
            Durability::Fsync => match self.fsync_support_cached().await? {
                FsyncSupport::WaitAof => {
                    let mut wait = redis::cmd("WAITAOF");
                    wait.arg(1).arg(0).arg(wait_ms);
                    (Some(wait), Durability::None)
                }
                FsyncSupport::Always => (None, Durability::Fsync),
                FsyncSupport::No(why) => return Err(CallError::Durability(why)),
            },
        };
        let keys = &self.inner.cfg.keys;
        let partition = self.partition_of(&envelope.id);
        let stream = keys.request_stream(topic, partition);
        // A partition whose last wait fell short: no wait this time (one
        // request a second still waits, and finds out when it can again).
        let short_key = format!("{stream} {level}");
        let wait = wait.filter(|_| !self.skip_wait(&short_key));
        let id = envelope.id.to_string();
        // A job's record also says the durability reached.
        let record = (envelope.kind == Kind::Job && level != Durability::None)
            .then(|| keys.request_record(topic, partition, &id));
        // The write a wait covers: the marker's (call) or record's (job)
        // expiry, set again to what the enqueue set.
        let touch = (level != Durability::None).then(|| {
            let key = match envelope.kind {
                Kind::Call => keys.call_marker(topic, partition, &id),
                Kind::Job => keys.request_record(topic, partition, &id),
            };
            (key, record_ttl.as_millis() as u64)
        });
        // Calls need only a marker; jobs keep a record with their status.
        let mut invocation = match envelope.kind {
            Kind::Call => {
                let mut inv = scripts::ENQUEUE_CALL.key(&stream);
                inv.key(keys.call_marker(topic, partition, &id))
                    .arg(record_ttl.as_millis() as u64);
                inv
            }
            Kind::Job => {
                let mut inv = scripts::ENQUEUE.key(&stream);
                inv.key(keys.request_record(topic, partition, &id))
                    .arg(record_ttl.as_millis() as u64)
                    .arg(envelope.kind.as_str());
                inv
            }
        };
        for (name, value) in envelope.to_fields() {
            invocation.arg(name).arg(value.as_ref());
        }
        let deadline = Instant::now() + envelope.deadline.remaining();
        // No new attempt past the enqueue budget; an attempt under way ends
        // by its own timeout.
        let give_up = deadline.min(Instant::now() + self.inner.cfg.enqueue_budget);
        let timeout = self.inner.redis.config().command_timeout;
        let result = holdfast_resilience::retry::retry(
            Backoff::new(Duration::from_millis(20), Duration::from_millis(500)),
            4,
            Some(&self.inner.budget),
            give_up,
            |e: &RedisError| {
                // Only a call that may have reached Redis is worth re-sending
                // at once; an outage the breaker already knows about is not.
                matches!(e, RedisError::Timeout(_) | RedisError::Connection(_))
                    || (e.is_retryable() && matches!(e, RedisError::Server(_)))
            },
            |_attempt| {
                let left = deadline.saturating_duration_since(Instant::now());
                // The caller's deadline, not Redis's budget, when it is the
                // shorter: then running out of it is the caller's, not a
                // Redis failure (see `Redis::run_before`).
                let caller_limited = left < timeout;
                let t = timeout.min(left.max(Duration::from_millis(1)));
                let invocation = &invocation;
                let short_key = &short_key;
                let wait = wait.as_ref();
                let touch = touch.as_ref();
                let record = record.as_deref();
                async move {
                    let Some(wait) = wait else {
                        // A job's record says the level reached, waited for
                        // or not.
                        self.inner
                            .redis
                            .run_before(deadline, timeout, |mut conn| async move {
                                let _: Option<String> = invocation.invoke_async(&mut conn).await?;
                                if let Some(record) = record {
                                    let _: () = redis::cmd("HSET")
                                        .arg(record)
                                        .arg("durability")
                                        .arg(reached_without_wait.to_string())
                                        .query_async(&mut conn)
                                        .await?;
                                }
                                Ok(())
                            })
                            .await?;
                        return Ok(reached_without_wait);
                    };
                    // A wait holds its connection until it ends: it gets a
                    // connection of its own, so the shared one never stalls
                    // behind it (one kept from an earlier wait, or a new
                    // one). On that connection, the enqueue (a no-op when a
                    // retry finds the request there already) and then a
                    // real write of its own (the marker's or record's expiry
                    // set again): the wait covers that write, and the
                    // replication stream is ordered, so it covers the
                    // entry. Connecting, writing and waiting all end by the
                    // caller's deadline.
                    let ends = give_up.min(Instant::now() + t + wait_timeout);
                    let waited = tokio::time::timeout_at(ends, async {
                        let mut conn = match self.take_wait_conn() {
                            Some(conn) => conn,
                            None => self
                                .inner
                                .redis
                                .dedicated(Some(timeout + wait_timeout))
                                .await
                                .map_err(WaitError::Redis)?,
                        };
                        let _: Option<String> = invocation.invoke_async(&mut conn).await?;
                        if let Some((key, ttl_ms)) = touch {
                            let _: () = redis::cmd("PEXPIRE")
                                .arg(key)
                                .arg(*ttl_ms)
                                .query_async(&mut conn)
                                .await?;
                        }
                        // On a cluster, to the primary that took the write.
                        let answer = match touch {
                            Some((key, _)) => conn.on_node_of(key, wait).await?,
                            None => wait.query_async(&mut conn).await?,
                        };
                        let reached = reached_by(level, &answer);
                        self.note_reached(short_key, level, reached);
                        if let Some(record) = record {
                            let _: () = redis::cmd("HSET")
                                .arg(record)
                                .arg("durability")
                                .arg(reached.to_string())
                                .query_async(&mut conn)
                                .await?;
                        }
                        self.keep_wait_conn(conn);
                        Ok::<_, WaitError>(reached)
                    })
                    .await;
                    if matches!(waited, Ok(Err(_))) {
                        // What failed on Redis's side may have failed the
                        // kept ones too (a failover, a restart): the next
                        // waits connect afresh. A deadline that ran out
                        // says nothing of them.
                        self.drop_wait_conns();
                    }
                    match waited {
                        Ok(Ok(reached)) => Ok(reached),
                        Ok(Err(WaitError::Redis(err))) => Err(err),
                        Ok(Err(WaitError::Command(err))) => {
                            let err = RedisError::from_redis(err);
                            self.inner.redis.report_error(&err);
                            Err(err)
                        }
                        // The caller's deadline came first: its own, not a
                        // Redis failure.
                        Err(_) if caller_limited || ends == deadline => {
                            Err(RedisError::CallerDeadline)
                        }
                        Err(_) => Err(RedisError::Timeout(t + wait_timeout)),
                    }
                }
            },
        )
        .await;
        result.map_err(|err| match err {
            RedisError::CallerDeadline => CallError::DeadlineExceeded,
            err => CallError::Redis(err),
        })
    }

    /// Whether enqueues on a partition at a level (`short_key`) skip their
    /// wait for now; the first after the pause waits again, and pauses the
    /// others meanwhile.
    fn skip_wait(&self, short_key: &str) -> bool {
        let mut short = self
            .inner
            .short_of_level
            .lock()
            .expect("short-of-level lock poisoned");
        match short.get_mut(short_key) {
            Some(until) if Instant::now() < *until => true,
            Some(until) => {
                *until = Instant::now() + SHORT_OF_LEVEL_PAUSE;
                false
            }
            None => false,
        }
    }

    /// Remembers whether a wait (`short_key`: partition and level) reached
    /// the level `asked`.
    fn note_reached(&self, short_key: &str, asked: Durability, reached: Durability) {
        let mut short = self
            .inner
            .short_of_level
            .lock()
            .expect("short-of-level lock poisoned");
        if reached == asked {
            short.remove(short_key);
        } else {
            short.insert(short_key.to_owned(), Instant::now() + SHORT_OF_LEVEL_PAUSE);
        }
    }

    /// A connection kept from an earlier wait, if any that has not been
    /// idle so long that Redis (its `timeout`) or something on the way may
    /// have closed it.
    fn take_wait_conn(&self) -> Option<holdfast_redis::Connection> {
        let mut kept = self
            .inner
            .wait_conns
            .lock()
            .expect("wait connections lock poisoned");
        let now = Instant::now();
        kept.retain(|(since, _)| now.saturating_duration_since(*since) < MAX_WAIT_CONN_IDLE);
        kept.pop().map(|(_, conn)| conn)
    }

    /// Keeps `conn` for the next wait, up to [`MAX_IDLE_WAIT_CONNS`].
    fn keep_wait_conn(&self, conn: holdfast_redis::Connection) {
        let mut kept = self
            .inner
            .wait_conns
            .lock()
            .expect("wait connections lock poisoned");
        if kept.len() < MAX_IDLE_WAIT_CONNS {
            kept.push((Instant::now(), conn));
        }
    }

    /// Drops every kept wait connection.
    fn drop_wait_conns(&self) {
        self.inner
            .wait_conns
            .lock()
            .expect("wait connections lock poisoned")
            .clear();
    }

    /// What this Redis offers for `fsync`, read again every
    /// [`FSYNC_SUPPORT_TTL`].
    async fn fsync_support_cached(&self) -> Result<FsyncSupport, CallError> {
        if let Some((at, support)) = self
            .inner
            .fsync_support
            .lock()
            .expect("fsync support lock poisoned")
            .clone()
            && at.elapsed() < FSYNC_SUPPORT_TTL
        {
            return Ok(support);
        }
        let support = fsync_support(&self.inner.redis).await?;
        *self
            .inner
            .fsync_support
            .lock()
            .expect("fsync support lock poisoned") = Some((Instant::now(), support.clone()));
        Ok(support)
    }
}

fn err_outcome(err: &CallError) -> &'static str {
    match err {
        CallError::Backlog { .. } => "backlog",
        CallError::Overloaded(_) => "overloaded",
        CallError::Redis(_) => "unavailable",
        CallError::DeadlineExceeded => "deadline",
        CallError::ShuttingDown => "shutdown",
        CallError::Durability(_) => "durability",
    }
}

/// How this Redis can make a write durable on its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsyncSupport {
    /// Redis 7.2 or later: `WAITAOF` waits for the fsync.
    WaitAof,
    /// Every write is fsynced before Redis answers (`appendfsync always`).
    Always,
    /// Neither: why.
    No(String),
}

/// What `INFO` and `CONFIG GET appendfsync` say of fsync on this server.
pub async fn fsync_support(redis: &holdfast_redis::Redis) -> Result<FsyncSupport, RedisError> {
    // One section per INFO call before Redis 7.0: ask for everything.
    let info: String = redis.info(None).await?;
    let field = |name: &str| {
        info.lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{name}:"))
                .map(str::to_owned)
        })
    };
    let version = field("redis_version").unwrap_or_default();
    if field("aof_enabled").as_deref() != Some("1") {
        return Ok(FsyncSupport::No(format!(
            "durability fsync needs the append-only file, and this Redis {version} runs without it (appendonly no); WAITAOF, which came with 7.2, needs it too"
        )));
    }
    let numbers: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    if numbers.len() >= 2 && (numbers[0], numbers[1]) >= (7, 2) {
        return Ok(FsyncSupport::WaitAof);
    }
    let policy: Result<Vec<String>, RedisError> = redis
        .cmd(redis::cmd("CONFIG").arg("GET").arg("appendfsync"))
        .await;
    Ok(match policy {
        Ok(pair) if pair.get(1).map(String::as_str) == Some("always") => FsyncSupport::Always,
        Ok(pair) => FsyncSupport::No(format!(
            "durability fsync needs appendfsync always on Redis {version} (no WAITAOF before 7.2); this server runs appendfsync {}",
            pair.get(1).map_or("unknown", String::as_str)
        )),
        Err(err) => FsyncSupport::No(format!(
            "durability fsync on Redis {version} (no WAITAOF before 7.2) needs appendfsync always, which could not be read: {err}"
        )),
    })
}

/// How long what [`fsync_support`] found is trusted.
pub const FSYNC_SUPPORT_TTL: Duration = Duration::from_secs(10);

/// The level a `WAIT` (a count of replicas) or `WAITAOF` (`[local,
/// replicas]`) answer shows was reached for `asked`.
fn reached_by(asked: Durability, answer: &redis::Value) -> Durability {
    let number = |v: &redis::Value| match v {
        redis::Value::Int(n) => *n,
        _ => 0,
    };
    match (asked, answer) {
        (Durability::Replicas(n), redis::Value::Int(got)) => {
            let got = u32::try_from(*got).unwrap_or(0).min(n);
            if got == 0 {
                Durability::None
            } else {
                Durability::Replicas(got)
            }
        }
        (Durability::Fsync, redis::Value::Array(parts))
            if parts.first().map(number).unwrap_or(0) >= 1 =>
        {
            Durability::Fsync
        }
        _ => Durability::None,
    }
}

/// Reads the reply stream until shutdown, reconnecting with backoff.
async fn read_replies(inner: Arc<Inner>) {
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut attempt = 0u32;
    // The stream is this caller's alone, so everything in it is ours.
    let mut last_id = "0-0".to_owned();
    let block_ms = inner.cfg.block.as_millis() as u64;
    loop {
        if inner.tasks.is_stopping() {
            return;
        }
        let conn = inner
            .redis
            .dedicated(Some(inner.cfg.block + Duration::from_secs(3)))
            .await;
        let mut conn = match conn {
            Ok(c) => {
                inner.reading.store(true, Ordering::Relaxed);
                c
            }
            Err(_) => {
                inner.reading.store(false, Ordering::Relaxed);
                let delay = backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = inner.tasks.stopping() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(1024)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&inner.reply_key)
                .arg(&last_id);
            let read = tokio::select! {
                _ = inner.tasks.stopping() => return,
                r = cmd.query_async::<Value>(&mut conn) => r,
            };
            match read {
                Ok(v) => {
                    // Only a read that worked resets the backoff: a read that
                    // fails on a healthy connection (NOPERM, WRONGTYPE) must
                    // not turn into a reconnect storm.
                    attempt = 0;
                    for entry in value::read_reply(v) {
                        match Reply::from_fields(entry.pairs()) {
                            Ok(reply) => {
                                let waiter = inner
                                    .waiters
                                    .lock()
                                    .expect("waiters lock poisoned")
                                    .remove(&reply.id);
                                if let Some(tx) = waiter {
                                    let _ = tx.send(reply);
                                }
                            }
                            Err(err) => {
                                tracing::warn!(entry = %entry.id, %err, "unreadable reply skipped")
                            }
                        }
                        last_id = entry.id;
                    }
                    *inner.last_read.lock().expect("last_read lock poisoned") =
                        Some(last_id.clone());
                }
                Err(err) => {
                    inner.reading.store(false, Ordering::Relaxed);
                    let err = RedisError::from_redis(err);
                    if matches!(err, RedisError::Connection(_)) {
                        inner.redis.report_connection_failure();
                    } else {
                        tracing::warn!(%err, key = %inner.reply_key, "the reply stream cannot be read");
                    }
                    let delay = backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = inner.tasks.stopping() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    break;
                }
            }
        }
    }
}

/// Refreshes the reply stream's TTL and trims replies already read.
async fn keep_alive(inner: Arc<Inner>) {
    let every = inner.cfg.reply_ttl / 3;
    loop {
        let mut pipe = redis::pipe();
        // The stream may not exist yet (workers create it with their first
        // reply); PEXPIRE on a missing key is a harmless no-op.
        pipe.cmd("PEXPIRE")
            .arg(&inner.reply_key)
            .arg(inner.cfg.reply_ttl.as_millis() as u64)
            .ignore();
        let last_read = inner
            .last_read
            .lock()
            .expect("last_read lock poisoned")
            .clone();
        if let Some(last_read) = last_read {
            // Everything below the last reply read has been dispatched.
            pipe.cmd("XTRIM")
                .arg(&inner.reply_key)
                .arg("MINID")
                .arg("~")
                .arg(last_read)
                .ignore();
        }
        let _ = inner
            .redis
            .pipe::<()>(&pipe, inner.redis.config().command_timeout)
            .await;
        tokio::select! {
            _ = inner.tasks.stopping() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
