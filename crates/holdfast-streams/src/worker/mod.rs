//! The worker runtime: read, handle, answer, acknowledge, and recover.
//!
//! The parts, one file each:
//! - `config`: [`WorkerConfig`], the settings and their defaults;
//! - `handler`: the [`Handler`] trait a topic's code implements, the
//!   [`Request`] it sees and the [`HandlerError`] it may answer;
//! - `read`: one reader per partition (`XREADGROUP`);
//! - `terminal`: one task per entry, running the handler;
//! - `finish`: the finisher, writing outcomes in batches;
//! - `maintain`: claims, reclaim, dead letters, trimming, backlog;
//! - `status`: [`WorkerStatus`], the live figures for health endpoints;
//! - this file: [`Worker`], which starts the tasks, drains them on shutdown,
//!   and the state they share.
//!
//! # Tasks, and what ends them
//!
//! [`Worker::run`] owns every task it starts and returns only after each has
//! ended (or was cut off at the drain timeout):
//! - readers, one per partition, in a `TaskTracker` that `run` waits for:
//!   each waits for a free terminal, then reads at most as many entries as
//!   there are free terminals, on a dedicated connection (the read blocks).
//!   They end on shutdown, after the read in progress, so no entry is
//!   delivered to a worker that has left.
//! - terminals, one task per entry, in the `handlers` tracker of the shared
//!   state: parse the envelope, answer `expired` without running the
//!   handler when the deadline has passed, otherwise run the handler with
//!   panics caught. Each ends once its outcome is queued.
//! - the finisher, a task whose handle `run` awaits (5 s at most, then it is
//!   aborted): writes queued outcomes in batches, one pipeline per batch
//!   (replies, job records, `XACK`). Ends when every sender of the outcome
//!   channel is gone, after the last flush.
//! - the maintenance loop, a task whose handle `run` awaits: refreshes the
//!   claims of long-running entries so nobody steals them, claims entries
//!   of dead consumers, moves entries past `max_deliveries` to the
//!   dead-letter stream, trims the request stream, and reads the backlog.
//!   From shutdown until the drain ends it only refreshes claims, so
//!   handlers still running keep their entries; it ends when `run` cancels
//!   its `drained` token.
//!
//! # What they share
//!
//! - The terminal semaphore (`concurrency` permits): readers and the
//!   reclaim take a permit per entry, the terminal drops it once its
//!   outcome is queued. It is the worker's one bound on work in hand.
//! - The outcome channel (bounded, twice the terminals): terminals and the
//!   maintenance loop send, the finisher alone receives. When Redis stalls
//!   it fills, which stops terminals and then reads.
//! - The in-flight map (entries that are ours, with when we took them):
//!   readers and the reclaim add, the finisher and the dead-lettering
//!   remove, maintenance reads it to refresh claims.
//! - Three cancellation tokens: the caller's `shutdown` stops reading and
//!   reclaiming; `hard_stop`, cancelled when the drain runs out of time,
//!   ends terminals and readers at once, leaving their entries pending;
//!   `drained` ends the maintenance loop.

mod config;
mod finish;
mod handler;
mod maintain;
mod read;
mod status;
mod terminal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_core::{Keys, metric_names};
use holdfast_redis::Redis;
use redis::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::meters::WorkerMeters;
use crate::value::RawEntry;

pub use config::{WorkerConfig, default_consumer_name};
use finish::Completion;
pub use handler::{FnHandler, Handler, HandlerError, Request, handler_fn};
pub use status::WorkerStatus;

/// What the tasks of one running worker share. Owned by `run`; every task
/// holds an `Arc` of it, and the finisher only a weak one (see there).
struct Ctx<H> {
    redis: Redis,
    cfg: WorkerConfig,
    handler: Arc<H>,
    status: WorkerStatus,
    /// The terminal semaphore: `concurrency` permits, one per entry from
    /// the moment a reader or the reclaim hands it over until its outcome
    /// is queued. Never closed.
    terminals: Arc<Semaphore>,
    /// Entries being handled, per partition, with their start: the
    /// maintenance loop refreshes their claims; the finisher removes them.
    in_flight: Mutex<HashMap<(u16, String), Instant>>,
    /// The terminals' tasks; `run` closes it at shutdown and waits for it
    /// under the drain timeout.
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
        let finisher = tokio::spawn(finish::finish(ctx.clone(), done_rx));
        let readers = TaskTracker::new();
        for partition in 0..ctx.cfg.partitions.max(1) {
            readers.spawn(read::read_partition(
                ctx.clone(),
                partition,
                shutdown.clone(),
            ));
        }
        readers.close();
        // Maintenance outlives the readers: during the drain it keeps the
        // claims of running handlers fresh, so no other worker takes them.
        let drained = CancellationToken::new();
        let maintenance = tokio::spawn(maintain::maintain(
            ctx.clone(),
            shutdown.clone(),
            drained.clone(),
        ));

        shutdown.cancelled().await;
        ctx.status.start_draining();
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
