//! The readers: one task per partition that reads new entries for this
//! consumer with `XREADGROUP` and hands each to a terminal.
//!
//! A reader reads only when a terminal is free, and at most as many entries
//! as there are free terminals, on a dedicated connection because the read
//! blocks. It ends on shutdown after the read in progress, so no entry is
//! delivered to a worker that has left, or at once on the hard stop.

use std::sync::Arc;
use std::time::Duration;

use holdfast_core::Keys;
use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::backoff::Backoff;
use redis::Value;
use tokio_util::sync::CancellationToken;

use super::{Ctx, Handler, terminal};
use crate::value;

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

pub(super) async fn read_partition<H: Handler>(
    ctx: Arc<Ctx<H>>,
    partition: u16,
    shutdown: CancellationToken,
) {
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
                        ctx.status.mark_consumed();
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
                        terminal::spawn_handle(&ctx, partition, entry, permit);
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
                    // A demoted primary answers READONLY: the supervisor
                    // then finds the new one (with Sentinel).
                    ctx.redis.report_error(&RedisError::from_redis(err));
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
