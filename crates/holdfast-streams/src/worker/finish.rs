//! The finisher: writes outcomes in batches, one pipeline per batch
//! (replies or job records, reply stream TTLs, then `XACK`s or the `XCLAIM`
//! that schedules a retry).
//!
//! It is the only reader of the `done` channel and ends when every sender
//! is gone, after its last flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{Deadline, Keys, Kind, Reply, ReplyStatus, RequestId};
use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Ctx, WorkerConfig};

/// What became of one entry, as the finisher writes it.
pub(super) enum Outcome {
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

/// One entry's outcome on its way to the finisher, with what the finisher
/// needs to answer and settle it.
pub(super) struct Completion {
    pub(super) partition: u16,
    pub(super) entry_id: String,
    pub(super) id: RequestId,
    pub(super) kind: Kind,
    pub(super) reply_to: Option<String>,
    pub(super) outcome: Outcome,
}

/// Writes outcomes in batches until every sender is gone.
pub(super) async fn finish<H>(ctx: Arc<Ctx<H>>, mut rx: mpsc::Receiver<Completion>) {
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
        status.add_handled(batch.len() as u64);
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
    // On a cluster the answers and the acknowledgements live on different
    // nodes, and a split pipeline runs its parts side by side: the
    // acknowledgements then go second, so no entry is acknowledged before
    // its answer is written. One server runs a pipeline in order.
    let mut settle = redis::pipe();
    if redis.is_cluster() {
        add_settle(&mut settle, cfg, &all);
    } else {
        add_settle(&mut pipe, cfg, &all);
    }
    let timeout = redis.config().command_timeout.max(Duration::from_secs(2));
    // Past the claim timeout another worker may take the entries anyway.
    let give_up = Instant::now() + cfg.claim_timeout;
    let written = write(redis, &pipe, timeout, give_up).await
        && (settle.is_empty() || write(redis, &settle, timeout, give_up).await);
    if written {
        return;
    }
    tracing::warn!(
        count = batch.len(),
        "could not write outcomes; the entries stay pending and will be delivered again"
    );
}

/// Writes one pipeline, retrying a lost connection until `give_up`;
/// whether it was written (a command the server refused counts as written:
/// the others ran, and sending it again would not help).
async fn write(redis: &Redis, pipe: &redis::Pipeline, timeout: Duration, give_up: Instant) -> bool {
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut attempt = 0;
    loop {
        let err = match redis.pipe::<()>(pipe, timeout).await {
            Ok(()) => return true,
            // A transient state (a cluster failover under way, a server
            // loading its file): the batch is sent again, so entries are
            // never acknowledged before their answers are stored.
            Err(err @ RedisError::Server(_)) if err.is_retryable() => err,
            Err(RedisError::Server(err)) => {
                tracing::warn!(%err, "a command of the batch was refused; the others ran");
                return true;
            }
            Err(err) => err,
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
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
}
