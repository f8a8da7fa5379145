//! The worker runtime: read, handle, answer, acknowledge, and recover.
//!
//! Tasks of one [`Worker`] and what ends them:
//! - one reader per partition: waits for a free terminal, then
//!   `XREADGROUP`s at most as many entries as there are free terminals, on a
//!   dedicated connection (the read blocks). Ends on shutdown, after the
//!   read in progress, so no entry is delivered to a worker that has left.
//! - one task per entry (a "terminal", bounded by a semaphore of
//!   `concurrency` permits): parses the envelope, answers `expired` without
//!   running the handler when the deadline has passed, and otherwise runs the
//!   handler with panics caught, so a panic fails one delivery and harms
//!   nothing else.
//! - the finisher: collects outcomes from a channel and writes them in
//!   batches, one pipeline per batch (replies, job records, `XACK`). Ends
//!   when every sender is gone, after the last flush.
//! - the maintenance loop: refreshes the claims of long-running entries so
//!   nobody steals them, claims entries of dead consumers, moves entries past
//!   `max_deliveries` to the dead-letter stream, trims the request stream,
//!   and reads the backlog. From shutdown until the drain ends it only
//!   refreshes claims, so handlers still running keep their entries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{
    Deadline, Envelope, EnvelopeError, Keys, Kind, Reply, ReplyStatus, RequestId, Topic,
    metric_names,
};
use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::backoff::Backoff;
use redis::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admin::Admin;
use crate::meters::WorkerMeters;
use crate::scripts;
use crate::value::{self, RawEntry};

/// Settings of one worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Key layout.
    pub keys: Keys,
    /// The topic served.
    pub topic: Topic,
    /// Partitions of the topic (must match the callers').
    pub partitions: u16,
    /// Consumer name in the group; unique per process.
    pub consumer: String,
    /// Requests handled at once ("terminals").
    pub concurrency: usize,
    /// An entry idle this long in another consumer's hands is claimed.
    pub claim_timeout: Duration,
    /// Deliveries after which an entry becomes a dead letter.
    pub max_deliveries: u32,
    /// After a failed delivery, how long before the entry is tried again
    /// (at most `claim_timeout`).
    pub retry_delay: Duration,
    /// How long one read blocks; also bounds how long shutdown waits for it.
    pub block: Duration,
    /// TTL set on reply streams written to (a dead caller's stream expires).
    pub reply_ttl: Duration,
    /// How long a job's record is kept after it finishes.
    pub job_ttl: Duration,
    /// How often the request stream is trimmed and its backlog read.
    pub trim_interval: Duration,
    /// Approximate cap of the dead-letter stream.
    pub dead_letter_maxlen: u64,
    /// How long shutdown waits for handlers in progress.
    pub drain_timeout: Duration,
    /// With a backlog and nothing consumed for this long, the worker
    /// reports itself not ready.
    pub stall_after: Duration,
}

impl WorkerConfig {
    /// Defaults for `topic`, with a consumer name unique to this process.
    pub fn new(keys: Keys, topic: Topic) -> Self {
        Self {
            keys,
            topic,
            partitions: 1,
            consumer: default_consumer_name(),
            concurrency: 16,
            claim_timeout: Duration::from_secs(5),
            max_deliveries: 3,
            retry_delay: Duration::from_millis(500),
            block: Duration::from_secs(1),
            reply_ttl: Duration::from_secs(60),
            job_ttl: Duration::from_secs(24 * 3600),
            trim_interval: Duration::from_secs(5),
            dead_letter_maxlen: 100_000,
            drain_timeout: Duration::from_secs(30),
            stall_after: Duration::from_secs(60),
        }
    }
}

/// `host-pid-random`: readable in `XINFO CONSUMERS`, unique per process.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// One request as the handler sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The envelope: id, deadline, body, trace context, idempotency key.
    pub envelope: Envelope,
    /// The topic it came from.
    pub topic: Topic,
    /// Its stream entry id.
    pub entry_id: String,
}

/// How a handler declines a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// The request itself is wrong; retrying cannot help. Answered `error`.
    #[error("{code}: {message}")]
    Rejected {
        /// Stable code for the caller.
        code: String,
        /// Message for a person.
        message: String,
    },
    /// Something failed that may work on another try; the entry is
    /// delivered again, up to `max_deliveries`.
    #[error("handler failed: {0}")]
    Failed(String),
}

/// The code that answers requests of a topic.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. A panic counts as a failed delivery and harms
    /// nothing else; at the deadline the future is dropped.
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static;
}

/// A [`Handler`] made from a closure.
pub struct FnHandler<F>(F);

/// Wraps `f` as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static {
        (self.0)(req)
    }
}

/// Live figures of a worker, shared with its health endpoints.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    capacity: usize,
    active: AtomicUsize,
    handled: AtomicU64,
    started_ms: u64,
    last_consumed_ms: AtomicU64,
    backlog: AtomicU64,
    lag: AtomicU64,
    draining: AtomicBool,
    stall_after: Duration,
}

impl WorkerStatus {
    fn new(capacity: usize, stall_after: Duration) -> Self {
        let now = Deadline::now_unix_ms();
        Self {
            inner: Arc::new(StatusInner {
                capacity,
                active: AtomicUsize::new(0),
                handled: AtomicU64::new(0),
                started_ms: now,
                last_consumed_ms: AtomicU64::new(now),
                backlog: AtomicU64::new(0),
                lag: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                stall_after,
            }),
        }
    }

    /// Terminals (concurrent requests allowed).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
    /// Requests being handled now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }
    /// Requests finished since start.
    pub fn handled(&self) -> u64 {
        self.inner.handled.load(Ordering::Relaxed)
    }
    /// Backlog of the topic as last read.
    pub fn backlog(&self) -> u64 {
        self.inner.backlog.load(Ordering::Relaxed)
    }
    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }
    /// When an entry was last read, unix ms (start time before the first).
    pub fn last_consumed_unix_ms(&self) -> u64 {
        self.inner.last_consumed_ms.load(Ordering::Relaxed)
    }
    /// Whether entries wait undelivered (group lag) while this worker,
    /// with nothing in hand, has consumed nothing for `stall_after`: it is
    /// stuck and should be restarted. Entries pending with other workers do
    /// not count; they are busy, not waiting.
    pub fn stalled(&self) -> bool {
        let idle = Deadline::now_unix_ms().saturating_sub(self.last_consumed_unix_ms());
        self.inner.lag.load(Ordering::Relaxed) > 0
            && self.active() == 0
            && idle > self.inner.stall_after.as_millis() as u64
    }
    /// Start time, unix ms.
    pub fn started_unix_ms(&self) -> u64 {
        self.inner.started_ms
    }
}

enum Outcome {
    Ok(Bytes),
    Error {
        code: String,
        message: String,
    },
    Expired,
    /// Already moved to the dead-letter stream and acknowledged; only the
    /// caller or job record is still to be told.
    Dead {
        code: String,
        message: String,
    },
    /// Failed; make it claimable again after `retry_delay`.
    Nack,
}

struct Completion {
    partition: u16,
    entry_id: String,
    id: RequestId,
    kind: Kind,
    reply_to: Option<String>,
    outcome: Outcome,
}

struct Ctx<H> {
    redis: Redis,
    cfg: WorkerConfig,
    handler: Arc<H>,
    status: WorkerStatus,
    terminals: Arc<Semaphore>,
    /// Entries being handled, per partition, with their start: the
    /// maintenance loop refreshes their claims; the finisher removes them.
    in_flight: Mutex<HashMap<(u16, String), Instant>>,
    handlers: TaskTracker,
    /// Outcomes for the finisher. Bounded (twice the terminals), so a
    /// stalled Redis stops terminals and then reads instead of queueing
    /// outcomes without end; a terminal is freed once its outcome is queued,
    /// so reading overlaps with writing the previous batch.
    done: mpsc::Sender<Completion>,
    reply_prefix: String,
    meters: Arc<WorkerMeters>,
    /// Cancelled when the drain runs out of time: terminals and readers
    /// stop at once and leave what they hold pending.
    hard_stop: CancellationToken,
}

/// A worker serving one topic; see the module docs.
pub struct Worker<H> {
    redis: Redis,
    cfg: WorkerConfig,
    handler: Arc<H>,
    status: WorkerStatus,
}

impl<H: Handler> Worker<H> {
    /// A worker that will serve `cfg.topic` with `handler` once run.
    pub fn new(redis: Redis, cfg: WorkerConfig, handler: H) -> Self {
        let status = WorkerStatus::new(cfg.concurrency, cfg.stall_after);
        metrics::gauge!(metric_names::WORKER_CAPACITY, "topic" => cfg.topic.to_string())
            .set(cfg.concurrency as f64);
        Self {
            redis,
            cfg,
            handler: Arc::new(handler),
            status,
        }
    }

    /// Live figures, for health and metrics.
    pub fn status(&self) -> WorkerStatus {
        self.status.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains: stops reading,
    /// lets handlers in progress finish (up to `drain_timeout`), writes their
    /// replies and acknowledgements, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let (done_tx, done_rx) = mpsc::channel(self.cfg.concurrency.max(1) * 2);
        let meters = Arc::new(WorkerMeters::new(&self.cfg.topic));
        let ctx = Arc::new(Ctx {
            reply_prefix: self.cfg.keys.reply_stream(""),
            terminals: Arc::new(Semaphore::new(self.cfg.concurrency.max(1))),
            redis: self.redis,
            cfg: self.cfg,
            handler: self.handler,
            status: self.status,
            in_flight: Mutex::new(HashMap::new()),
            handlers: TaskTracker::new(),
            done: done_tx,
            meters,
            hard_stop: CancellationToken::new(),
        });
        let finisher = tokio::spawn(finish(ctx.clone(), done_rx));
        let readers = TaskTracker::new();
        for partition in 0..ctx.cfg.partitions.max(1) {
            readers.spawn(read_partition(ctx.clone(), partition, shutdown.clone()));
        }
        readers.close();
        // Maintenance outlives the readers: during the drain it keeps the
        // claims of running handlers fresh, so no other worker takes them.
        let drained = CancellationToken::new();
        let maintenance = tokio::spawn(maintain(ctx.clone(), shutdown.clone(), drained.clone()));

        shutdown.cancelled().await;
        ctx.status.inner.draining.store(true, Ordering::Relaxed);
        tracing::info!(topic = %ctx.cfg.topic, active = ctx.status.active(), "worker draining");
        // One budget for the whole drain: readers finish their last read,
        // then terminals finish what they hold.
        let drain = async {
            readers.wait().await;
            ctx.handlers.close();
            ctx.handlers.wait().await;
        };
        if tokio::time::timeout(ctx.cfg.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                active = ctx.status.active(),
                "drain timeout: unfinished requests stay pending and will be claimed by other workers"
            );
            ctx.hard_stop.cancel();
            ctx.handlers.close();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                readers.wait().await;
                ctx.handlers.wait().await;
            })
            .await;
        }
        drained.cancel();
        let _ = maintenance.await;
        let redis = ctx.redis.clone();
        let cfg = ctx.cfg.clone();
        // The finisher ends when the last sender is gone: ours is in `ctx`.
        drop(ctx);
        let mut finisher = finisher;
        if tokio::time::timeout(Duration::from_secs(5), &mut finisher)
            .await
            .is_err()
        {
            finisher.abort();
        }
        retire_consumer(&redis, &cfg).await;
        tracing::info!("worker stopped");
    }
}

/// Removes this consumer from the group when it leaves nothing pending, so
/// restarts and scaling do not pile up dead consumers in `XINFO`.
async fn retire_consumer(redis: &Redis, cfg: &WorkerConfig) {
    for partition in 0..cfg.partitions.max(1) {
        let stream = cfg.keys.request_stream(&cfg.topic, partition);
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(&stream)
            .arg(Keys::GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&cfg.consumer);
        // Deleting a consumer drops its pending entries from the group's
        // list: only ever delete one that holds none.
        if let Ok(Value::Array(held)) = redis.cmd::<Value>(&pending).await
            && held.is_empty()
        {
            let mut del = redis::cmd("XGROUP");
            del.arg("DELCONSUMER")
                .arg(&stream)
                .arg(Keys::GROUP)
                .arg(&cfg.consumer);
            let _ = redis.cmd::<i64>(&del).await;
        }
    }
}

impl<H> Ctx<H> {
    /// Registers entries as in progress from the moment they are ours, so
    /// their claims are refreshed even while they wait for a terminal.
    fn track(&self, partition: u16, entries: &[RawEntry]) {
        let now = Instant::now();
        let mut in_flight = self.in_flight.lock().expect("in_flight lock poisoned");
        for entry in entries {
            in_flight.insert((partition, entry.id.clone()), now);
        }
    }

    fn untrack(&self, partition: u16, entry_id: &str) {
        self.in_flight
            .lock()
            .expect("in_flight lock poisoned")
            .remove(&(partition, entry_id.to_owned()));
    }
}

fn is_no_group(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP")
}

/// Creates the consumer group (and the stream) if missing. Reading from `0`
/// means entries queued before any worker existed are still delivered.
async fn ensure_group(redis: &Redis, stream: &str) -> Result<(), RedisError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(stream)
        .arg(Keys::GROUP)
        .arg("0")
        .arg("MKSTREAM");
    match redis.cmd::<()>(&cmd).await {
        Ok(()) => Ok(()),
        Err(RedisError::Server(e)) if e.to_string().contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

async fn read_partition<H: Handler>(ctx: Arc<Ctx<H>>, partition: u16, shutdown: CancellationToken) {
    let stream = ctx.cfg.keys.request_stream(&ctx.cfg.topic, partition);
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut attempt = 0u32;
    let mut group_ready = false;
    let mut conn = None;
    let block_ms = ctx.cfg.block.as_millis() as u64;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let failed = 'read: {
            if !group_ready {
                if ensure_group(&ctx.redis, &stream).await.is_err() {
                    break 'read true;
                }
                group_ready = true;
            }
            if conn.is_none() {
                match ctx
                    .redis
                    .dedicated(Some(ctx.cfg.block + Duration::from_secs(5)))
                    .await
                {
                    Ok(c) => conn = Some(c),
                    Err(_) => break 'read true,
                }
            }
            // Wait for a free terminal but do not hold it while the read
            // blocks: the reclaim path needs free terminals too. Entries
            // read beyond what is free when they arrive wait for a permit,
            // with their claims refreshed meanwhile.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                permit = ctx.terminals.acquire() => drop(permit.expect("semaphore never closed")),
            };
            let count = ctx.terminals.available_permits().clamp(1, 256);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(Keys::GROUP)
                .arg(&ctx.cfg.consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">");
            let c = conn.as_mut().expect("connected above");
            match cmd.query_async::<Value>(c).await {
                Ok(v) => {
                    let entries = value::read_reply(v);
                    if !entries.is_empty() {
                        ctx.status
                            .inner
                            .last_consumed_ms
                            .store(Deadline::now_unix_ms(), Ordering::Relaxed);
                    }
                    ctx.track(partition, &entries);
                    // Entries read are ours even if shutdown began during the
                    // read: handle them (the drain waits), never leave them
                    // pending for a claim timeout under a consumer that left.
                    for entry in entries {
                        let permit = tokio::select! {
                            p = ctx.terminals.clone().acquire_owned() => p.expect("semaphore never closed"),
                            _ = ctx.hard_stop.cancelled() => return,
                        };
                        spawn_handle(&ctx, partition, entry, permit);
                    }
                    attempt = 0;
                    false
                }
                Err(err) if is_no_group(&err) => {
                    // The stream or group vanished (a restart without
                    // persistence): create it again and carry on.
                    tracing::warn!(%stream, "consumer group missing; re-creating it");
                    group_ready = false;
                    false
                }
                Err(err) => {
                    tracing::debug!(%err, %stream, "read failed");
                    conn = None;
                    ctx.redis.report_connection_failure();
                    true
                }
            }
        };
        if failed {
            let delay = backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

fn spawn_handle<H: Handler>(
    ctx: &Arc<Ctx<H>>,
    partition: u16,
    entry: RawEntry,
    permit: OwnedSemaphorePermit,
) {
    let task_ctx = ctx.clone();
    // One terminal: its permit travels with the outcome until it is written.
    ctx.handlers.spawn(async move {
        let ctx = task_ctx;
        ctx.status.inner.active.fetch_add(1, Ordering::Relaxed);
        ctx.meters.active.increment(1.0);
        handle_entry(&ctx, partition, entry, permit).await;
        ctx.status.inner.active.fetch_sub(1, Ordering::Relaxed);
        ctx.meters.active.decrement(1.0);
    });
}

fn parse<H>(ctx: &Ctx<H>, entry: &RawEntry) -> Result<Envelope, EnvelopeError> {
    let mut env = Envelope::from_fields(entry.pairs())?;
    match env.kind {
        // A job is never answered on a stream, whatever it says.
        Kind::Job => env.reply_to = None,
        Kind::Call => {
            let reply_to = env.reply_to.as_deref().unwrap_or("");
            // Workers write only to reply streams, never to a key an entry names.
            if !reply_to.starts_with(&ctx.reply_prefix) || reply_to.len() == ctx.reply_prefix.len()
            {
                return Err(EnvelopeError::Invalid {
                    field: holdfast_core::fields::REPLY_TO,
                    reason: "not a reply stream of this key prefix",
                });
            }
        }
    }
    Ok(env)
}

async fn handle_entry<H: Handler>(
    ctx: &Arc<Ctx<H>>,
    partition: u16,
    entry: RawEntry,
    permit: OwnedSemaphorePermit,
) {
    let topic = &ctx.cfg.topic;
    let env = match parse(ctx, &entry) {
        Ok(env) => env,
        Err(err) => {
            dead_letter_now(ctx, partition, &entry, &err).await;
            return;
        }
    };
    let base = |outcome| Completion {
        partition,
        entry_id: entry.id.clone(),
        id: env.id,
        kind: env.kind,
        reply_to: env.reply_to.clone(),
        outcome,
    };
    if env.deadline.is_past() {
        let _ = ctx.done.send(base(Outcome::Expired)).await;
        drop(permit);
        return;
    }
    let started = Instant::now();
    let remaining = env.deadline.remaining();
    let req = Request {
        envelope: env.clone(),
        topic: topic.clone(),
        entry_id: entry.id.clone(),
    };
    // The handler runs in a span whose parent is the caller's span when the
    // entry carries its trace context.
    let span = tracing::info_span!("handle", topic = %topic, id = %env.id);
    if let Some(traceparent) = env.traceparent.as_deref() {
        crate::trace_context::set_parent(&span, traceparent);
    }
    // A panic in the handler is caught here and counts as a failed delivery;
    // at the deadline the handler's future is dropped, which stops it.
    let handled = CatchPanic(Box::pin(
        span.in_scope(|| ctx.handler.handle(req)).instrument(span),
    ));
    let finished = tokio::select! {
        finished = tokio::time::timeout(remaining, handled) => finished,
        // The drain ran out of time: leave the entry pending; with its claim
        // no longer refreshed, another worker takes it.
        _ = ctx.hard_stop.cancelled() => return,
    };
    let outcome = match finished {
        Ok(Ok(Ok(body))) => Outcome::Ok(body),
        Ok(Ok(Err(HandlerError::Rejected { code, message }))) => Outcome::Error { code, message },
        Ok(Ok(Err(HandlerError::Failed(message)))) => {
            tracing::warn!(id = %env.id, %message, "handler failed; will retry");
            Outcome::Nack
        }
        Ok(Err(Panicked)) => {
            tracing::error!(id = %env.id, "handler panicked; will retry");
            Outcome::Nack
        }
        Err(_) => Outcome::Expired,
    };
    ctx.meters.duration.record(started.elapsed().as_secs_f64());
    let _ = ctx.done.send(base(outcome)).await;
    drop(permit);
}

/// The handler panicked.
struct Panicked;

/// Turns a panic while polling the inner future into `Err(Panicked)`, so a
/// handler's panic ends its request, not its worker.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(Err(Panicked)),
        }
    }
}

/// Moves a malformed entry to the dead-letter stream with the reason, and
/// tells its caller if the entry says who that is.
async fn dead_letter_now<H>(ctx: &Ctx<H>, partition: u16, entry: &RawEntry, err: &EnvelopeError) {
    let keys = &ctx.cfg.keys;
    let topic = &ctx.cfg.topic;
    ctx.untrack(partition, &entry.id);
    tracing::warn!(entry = %entry.id, %err, "malformed entry moved to dead letters");
    let stream = keys.request_stream(topic, partition);
    let dead = keys.dead_letter_stream(topic, partition);
    let reason = err.to_string();
    let mut inv = scripts::DEAD_LETTER.key(&stream);
    inv.key(&dead)
        .arg(Keys::GROUP)
        .arg(&entry.id)
        .arg(&reason)
        .arg(err.code())
        .arg(1)
        .arg(Deadline::now_unix_ms())
        .arg(ctx.cfg.dead_letter_maxlen);
    if let Err(e) = ctx
        .redis
        .script::<i64>(&inv, ctx.redis.config().command_timeout)
        .await
    {
        // Still pending: the reclaim path will dead-letter it later.
        tracing::warn!(error = %e, "could not move malformed entry yet");
        return;
    }
    ctx.meters.dead_letter(err.code());
    notify_dead(ctx, partition, entry, err.code(), &reason).await;
}

/// Queues a `dead` answer for an entry already moved, if it names a
/// request id (and, for calls, a valid reply stream).
async fn notify_dead<H>(ctx: &Ctx<H>, partition: u16, entry: &RawEntry, code: &str, message: &str) {
    let Some(id) = entry
        .get(b"id")
        .and_then(|raw| RequestId::from_bytes(raw).ok())
    else {
        return;
    };
    let kind = match entry.get(b"kind") {
        Some(b"job") => Kind::Job,
        _ => Kind::Call,
    };
    let reply_to = entry
        .get(b"reply_to")
        .and_then(|r| std::str::from_utf8(r).ok())
        .filter(|r| r.starts_with(&ctx.reply_prefix) && r.len() > ctx.reply_prefix.len())
        .map(str::to_owned);
    if kind == Kind::Call && reply_to.is_none() {
        return;
    }
    let _ = ctx
        .done
        .send(Completion {
            partition,
            entry_id: entry.id.clone(),
            id,
            kind,
            reply_to,
            outcome: Outcome::Dead {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        })
        .await;
}

/// Writes outcomes in batches until every sender is gone.
async fn finish<H>(ctx: Arc<Ctx<H>>, mut rx: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(512);
    // `ctx` holds a sender too; keep only what the flush needs so the
    // channel closes once readers, terminals and maintenance are gone.
    let redis = ctx.redis.clone();
    let cfg = ctx.cfg.clone();
    let status = ctx.status.clone();
    let meters = ctx.meters.clone();
    let in_flight_owner = Arc::downgrade(&ctx);
    drop(ctx);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        flush(&redis, &cfg, &batch).await;
        status
            .inner
            .handled
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(ctx) = in_flight_owner.upgrade() {
            let mut in_flight = ctx.in_flight.lock().expect("in_flight lock poisoned");
            for c in &batch {
                in_flight.remove(&(c.partition, c.entry_id.clone()));
            }
        }
        for c in batch.drain(..) {
            let outcome = match c.outcome {
                Outcome::Ok(_) => "ok",
                Outcome::Error { .. } => "error",
                Outcome::Expired => "expired",
                Outcome::Dead { .. } => "dead",
                Outcome::Nack => "retry",
            };
            meters.handled(outcome);
        }
    }
}

fn add_answer(pipe: &mut redis::Pipeline, cfg: &WorkerConfig, c: &Completion) {
    let (status, body, code, message) = match &c.outcome {
        Outcome::Ok(body) => (ReplyStatus::Ok, body.clone(), None, None),
        Outcome::Error { code, message } => (
            ReplyStatus::Error,
            Bytes::new(),
            Some(code.as_str()),
            Some(message.as_str()),
        ),
        Outcome::Expired => (
            ReplyStatus::Expired,
            Bytes::new(),
            Some("deadline_exceeded"),
            Some("the deadline passed before the request was handled"),
        ),
        Outcome::Dead { code, message } => (
            ReplyStatus::Dead,
            Bytes::new(),
            Some(code.as_str()),
            Some(message.as_str()),
        ),
        Outcome::Nack => return,
    };
    match c.kind {
        Kind::Call => {
            let Some(reply_to) = &c.reply_to else { return };
            let reply = Reply {
                id: c.id,
                status,
                code: code.map(str::to_owned),
                message: message.map(str::to_owned),
                body,
                worker: cfg.consumer.clone(),
            };
            let xadd = pipe
                .cmd("XADD")
                .arg(reply_to)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*");
            for (name, value) in reply.to_fields() {
                xadd.arg(name).arg(value.as_ref());
            }
            xadd.ignore();
        }
        Kind::Job => {
            let record = cfg
                .keys
                .request_record(&cfg.topic, c.partition, &c.id.to_string());
            let hset = pipe
                .cmd("HSET")
                .arg(&record)
                .arg("status")
                .arg(match status {
                    ReplyStatus::Ok => "done",
                    ReplyStatus::Error => "failed",
                    ReplyStatus::Expired => "expired",
                    ReplyStatus::Dead => "dead",
                })
                .arg("worker")
                .arg(&cfg.consumer)
                .arg("finished_ms")
                .arg(Deadline::now_unix_ms());
            if status == ReplyStatus::Ok {
                hset.arg("result").arg(body.as_ref());
            }
            if let Some(code) = code {
                hset.arg("code").arg(code);
            }
            if let Some(message) = message {
                hset.arg("message").arg(message);
            }
            hset.ignore();
            pipe.cmd("PEXPIRE")
                .arg(&record)
                .arg(cfg.job_ttl.as_millis() as u64)
                .ignore();
        }
    }
}

fn add_settle(pipe: &mut redis::Pipeline, cfg: &WorkerConfig, batch: &[&Completion]) {
    let mut acks: HashMap<u16, Vec<&str>> = HashMap::new();
    for c in batch {
        let stream = cfg.keys.request_stream(&cfg.topic, c.partition);
        match c.outcome {
            Outcome::Dead { .. } => {}
            Outcome::Nack => {
                // JUSTID keeps the delivery count; IDLE makes the entry
                // claimable `retry_delay` from now, and the reclaim that
                // takes it counts the retry.
                let idle = cfg.claim_timeout.saturating_sub(cfg.retry_delay);
                pipe.cmd("XCLAIM")
                    .arg(&stream)
                    .arg(Keys::GROUP)
                    .arg(&cfg.consumer)
                    .arg(0)
                    .arg(&c.entry_id)
                    .arg("IDLE")
                    .arg(idle.as_millis() as u64)
                    .arg("JUSTID")
                    .ignore();
            }
            _ => acks.entry(c.partition).or_default().push(&c.entry_id),
        }
    }
    for (partition, ids) in acks {
        let stream = cfg.keys.request_stream(&cfg.topic, partition);
        pipe.cmd("XACK")
            .arg(stream)
            .arg(Keys::GROUP)
            .arg(ids)
            .ignore();
    }
}

/// Writes a batch in one pipeline: answers, one TTL refresh per reply
/// stream, then acknowledgements. Commands of a pipeline run one by one, so
/// a server error in one (say a reply stream that is not a stream) does not
/// stop the others: it is logged, not retried. A lost connection is
/// retried a few times; after that the entries stay pending and are
/// delivered again, which is the at-least-once promise.
async fn flush(redis: &Redis, cfg: &WorkerConfig, batch: &[Completion]) {
    let mut pipe = redis::pipe();
    let mut reply_streams: Vec<&str> = Vec::new();
    for c in batch {
        add_answer(&mut pipe, cfg, c);
        if let (Kind::Call, Some(reply_to)) = (c.kind, c.reply_to.as_deref())
            && !matches!(c.outcome, Outcome::Nack)
            && !reply_streams.contains(&reply_to)
        {
            reply_streams.push(reply_to);
        }
    }
    // A reply stream outlives its caller by at most `reply_ttl`.
    for key in reply_streams {
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(cfg.reply_ttl.as_millis() as u64)
            .ignore();
    }
    let all: Vec<&Completion> = batch.iter().collect();
    add_settle(&mut pipe, cfg, &all);
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let timeout = redis.config().command_timeout.max(Duration::from_secs(2));
    // Past the claim timeout another worker may take the entries anyway.
    let give_up = Instant::now() + cfg.claim_timeout;
    let mut attempt = 0;
    loop {
        let err = match redis.pipe::<()>(&pipe, timeout).await {
            Ok(()) => return,
            Err(RedisError::Server(err)) => {
                tracing::warn!(%err, "a command of the batch was refused; the others ran");
                return;
            }
            Err(err) => err,
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tracing::debug!(%err, attempt, "batch write failed; retrying");
        match err {
            // No connection: wait for the supervisor to get one back.
            RedisError::Unavailable { .. } => {
                redis.wait_ready(left).await;
            }
            _ => tokio::time::sleep(backoff.delay(attempt).min(left)).await,
        }
        attempt += 1;
    }
    tracing::warn!(
        count = batch.len(),
        "could not write outcomes; the entries stay pending and will be delivered again"
    );
}

/// Claims, dead letters, trimming and backlog; see the module docs.
/// Until `shutdown` it does all of it; from then until `drained` it only
/// refreshes the claims of handlers still running.
async fn maintain<H: Handler>(
    ctx: Arc<Ctx<H>>,
    shutdown: CancellationToken,
    drained: CancellationToken,
) {
    let tick = (ctx.cfg.claim_timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let admin = Admin::new(ctx.redis.clone(), ctx.cfg.keys.clone(), ctx.cfg.partitions);
    // Trim on the first tick.
    let mut last_trim = Instant::now()
        .checked_sub(ctx.cfg.trim_interval)
        .unwrap_or_else(Instant::now);
    loop {
        tokio::select! {
            _ = drained.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        refresh_claims(&ctx).await;
        if shutdown.is_cancelled() {
            continue;
        }
        reclaim(&ctx).await;
        if last_trim.elapsed() >= ctx.cfg.trim_interval {
            last_trim = Instant::now();
            for partition in 0..ctx.cfg.partitions.max(1) {
                let stream = ctx.cfg.keys.request_stream(&ctx.cfg.topic, partition);
                let inv = scripts::TRIM.key(&stream);
                if let Err(err) = ctx
                    .redis
                    .script::<i64>(&inv, ctx.redis.config().command_timeout)
                    .await
                {
                    tracing::debug!(%err, "trim failed");
                }
            }
            if let Ok(stats) = admin.topic_stats(&ctx.cfg.topic).await {
                ctx.status
                    .inner
                    .backlog
                    .store(stats.backlog, Ordering::Relaxed);
                ctx.status.inner.lag.store(stats.lag, Ordering::Relaxed);
                ctx.meters.backlog.set(stats.backlog as f64);
            }
        }
    }
}

/// Resets the idle time of entries handled for a while, so that no other
/// worker claims a request that is merely slow.
async fn refresh_claims<H>(ctx: &Ctx<H>) {
    let threshold = ctx.cfg.claim_timeout / 3;
    let mut by_partition: HashMap<u16, Vec<String>> = HashMap::new();
    {
        let in_flight = ctx.in_flight.lock().expect("in_flight lock poisoned");
        for ((partition, id), started) in in_flight.iter() {
            if started.elapsed() >= threshold {
                by_partition.entry(*partition).or_default().push(id.clone());
            }
        }
    }
    for (partition, ids) in by_partition {
        let stream = ctx.cfg.keys.request_stream(&ctx.cfg.topic, partition);
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&stream)
            .arg(Keys::GROUP)
            .arg(&ctx.cfg.consumer)
            .arg(0)
            .arg(&ids)
            .arg("JUSTID");
        if let Err(err) = ctx.redis.cmd::<Value>(&cmd).await {
            tracing::debug!(%err, "claim refresh failed");
        }
    }
}

/// Takes over entries that other consumers left idle past the claim
/// timeout, as many as there are free terminals.
async fn reclaim<H: Handler>(ctx: &Arc<Ctx<H>>) {
    for partition in 0..ctx.cfg.partitions.max(1) {
        let mut permits = Vec::new();
        while permits.len() < 64 {
            match ctx.terminals.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if permits.is_empty() {
            return;
        }
        let stream = ctx.cfg.keys.request_stream(&ctx.cfg.topic, partition);
        let dead = ctx.cfg.keys.dead_letter_stream(&ctx.cfg.topic, partition);
        let mut inv = scripts::RECLAIM.key(&stream);
        inv.key(&dead)
            .arg(Keys::GROUP)
            .arg(&ctx.cfg.consumer)
            .arg(ctx.cfg.claim_timeout.as_millis() as u64)
            .arg(permits.len())
            .arg(ctx.cfg.max_deliveries)
            .arg(Deadline::now_unix_ms())
            .arg(ctx.cfg.dead_letter_maxlen);
        let result = ctx
            .redis
            .script::<Value>(&inv, ctx.redis.config().command_timeout)
            .await;
        let Ok(Value::Array(mut parts)) = result else {
            if let Err(err) = result {
                tracing::debug!(%err, "reclaim failed");
            }
            continue;
        };
        let dead_fields = parts.pop().unwrap_or(Value::Nil);
        let claimed = value::entries(parts.pop().unwrap_or(Value::Nil));
        if let Value::Array(dead_list) = dead_fields {
            for fields in dead_list {
                if let Some(entry) = RawEntry::from_fields(String::new(), fields) {
                    ctx.meters.dead_letter("max_deliveries");
                    notify_dead(
                        ctx,
                        partition,
                        &entry,
                        "max_deliveries",
                        "the request failed on every delivery and was moved to the dead-letter stream",
                    )
                    .await;
                }
            }
        }
        if !claimed.is_empty() {
            tracing::info!(
                count = claimed.len(),
                partition,
                "claimed entries idle past the claim timeout"
            );
            ctx.meters.claimed.increment(claimed.len() as u64);
            ctx.status
                .inner
                .last_consumed_ms
                .store(Deadline::now_unix_ms(), Ordering::Relaxed);
        }
        // An entry of our own whose claim refresh lagged comes back too; it
        // is already being handled here and must not run twice.
        let claimed: Vec<RawEntry> = {
            let in_flight = ctx.in_flight.lock().expect("in_flight lock poisoned");
            claimed
                .into_iter()
                .filter(|e| !in_flight.contains_key(&(partition, e.id.clone())))
                .collect()
        };
        ctx.track(partition, &claimed);
        for (entry, permit) in claimed.into_iter().zip(permits) {
            spawn_handle(ctx, partition, entry, permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_stalled_only_with_a_backlog_no_work_and_a_long_silence() {
        let status = WorkerStatus::new(4, Duration::from_millis(100));
        let long_ago = Deadline::now_unix_ms() - 1_000;
        status
            .inner
            .last_consumed_ms
            .store(long_ago, Ordering::Relaxed);
        assert!(!status.stalled(), "no backlog: idle, not stalled");

        status.inner.backlog.store(3, Ordering::Relaxed);
        assert!(
            !status.stalled(),
            "pending with others is busy, not waiting"
        );
        status.inner.lag.store(3, Ordering::Relaxed);
        assert!(status.stalled());

        status.inner.active.store(1, Ordering::Relaxed);
        assert!(!status.stalled(), "busy is not stalled");

        status.inner.active.store(0, Ordering::Relaxed);
        status
            .inner
            .last_consumed_ms
            .store(Deadline::now_unix_ms(), Ordering::Relaxed);
        assert!(!status.stalled(), "consumed just now");
    }
}
