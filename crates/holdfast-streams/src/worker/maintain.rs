//! The maintenance loop: keeps claims fresh, takes over what dead
//! consumers left, dead-letters what keeps failing, trims the request
//! streams and reads the backlog.
//!
//! One task per worker, on a tick of a third of the claim timeout. From
//! shutdown until the drain ends it only refreshes claims, so handlers still
//! running keep their entries; it ends when `run` cancels `drained`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use holdfast_core::{Deadline, Keys};
use redis::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Ctx, Handler, terminal};
use crate::admin::Admin;
use crate::scripts;
use crate::value::{self, RawEntry};

/// Claims, dead letters, trimming and backlog; see the module docs.
/// Until `shutdown` it does all of it; from then until `drained` it only
/// refreshes the claims of handlers still running.
pub(super) async fn maintain<H: Handler>(
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
                ctx.status.set_backlog(stats.backlog, stats.lag);
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
                    terminal::notify_dead(
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
            ctx.status.mark_consumed();
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
            terminal::spawn_handle(ctx, partition, entry, permit);
        }
    }
}
