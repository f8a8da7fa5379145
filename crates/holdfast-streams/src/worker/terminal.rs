//! The terminals: one task per entry, at most `concurrency` at once.
//!
//! A terminal holds one permit of the worker's terminal semaphore from the
//! moment its entry is handed over until its outcome is queued for the
//! finisher. It parses the envelope (a malformed entry goes straight to the
//! dead-letter stream), answers `expired` without running the handler when
//! the deadline has passed, and otherwise runs the handler with panics
//! caught and the deadline as a timeout, so a panic or a hang fails one
//! delivery and harms nothing else. It ends with its outcome queued, or at
//! once on the hard stop, leaving the entry pending for another worker.

use std::future::Future;
use std::sync::Arc;

use holdfast_core::{Deadline, Envelope, EnvelopeError, Keys, Kind, RequestId};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use super::finish::{Completion, Outcome};
use super::{Ctx, Handler, HandlerError, Request};
use crate::scripts;
use crate::value::RawEntry;

pub(super) fn spawn_handle<H: Handler>(
    ctx: &Arc<Ctx<H>>,
    partition: u16,
    entry: RawEntry,
    permit: OwnedSemaphorePermit,
) {
    let task_ctx = ctx.clone();
    // One terminal: its permit travels with the outcome until it is written.
    ctx.handlers.spawn(async move {
        let ctx = task_ctx;
        ctx.status.request_started();
        ctx.meters.active.increment(1.0);
        handle_entry(&ctx, partition, entry, permit).await;
        ctx.status.request_ended();
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
pub(super) async fn notify_dead<H>(
    ctx: &Ctx<H>,
    partition: u16,
    entry: &RawEntry,
    code: &str,
    message: &str,
) {
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
