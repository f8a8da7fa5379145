//! Applies other instances' invalidations to this instance's L1.
//!
//! [`crate::ReadThrough::invalidate`] publishes the key on
//! `{prefix}:cache:invalidate:{entity}`. This task subscribes to that
//! channel on a connection of its own (a RESP3 connection whose push
//! messages arrive on an mpsc channel, so no stream combinators are
//! needed) and drops each announced key from L1.
//!
//! Pub/sub is fire-and-forget: messages published while this subscriber is
//! disconnected are lost. So every (re)subscription empties L1, and L1's
//! short TTL bounds how long an old value can live in the gap between the
//! connection breaking and this task noticing.

use std::sync::Arc;

use holdfast_redis::redis::{self, ProtocolVersion, PushKind, Value};
use holdfast_resilience::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::read_through::{Inner, L1Cache};

/// Reconnect delays: quick first retries to ride out a blip, capped so a
/// recovered Redis is noticed within two seconds.
const RECONNECT_BACKOFF: Backoff = Backoff::new(
    std::time::Duration::from_millis(50),
    std::time::Duration::from_secs(2),
);

/// Runs until `shutdown`; see the module docs.
pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let Some(l1) = inner.l1.clone() else {
        return;
    };
    if !inner.redis.is_enabled() {
        return;
    }
    let mut attempt: u32 = 0;
    loop {
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = subscribe(&inner) => r,
        };
        match subscribed {
            Ok((connection, mut pushes)) => {
                attempt = 0;
                // Invalidations sent while we were not listening are lost.
                l1.invalidate_all();
                tracing::debug!(channel = %inner.channel, "listening for cache invalidations");
                let ended = listen(&inner, &l1, &mut pushes, &shutdown).await;
                drop(connection);
                if ended == Listen::Shutdown {
                    return;
                }
                // The same gap, from the other side: nothing is heard
                // until the next subscription.
                l1.invalidate_all();
                tracing::info!(channel = %inner.channel, "invalidation subscriber lost its connection");
            }
            Err(err) => {
                tracing::debug!(channel = %inner.channel, error = %err, "invalidation subscribe failed");
            }
        }
        // Every failed attempt waits, so a Redis that is down costs one
        // connect attempt per backoff step, not a busy loop.
        let delay = RECONNECT_BACKOFF.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[derive(PartialEq, Eq)]
enum Listen {
    Shutdown,
    Disconnected,
}

async fn listen(
    inner: &Inner,
    l1: &L1Cache,
    pushes: &mut mpsc::UnboundedReceiver<redis::PushInfo>,
    shutdown: &CancellationToken,
) -> Listen {
    let prefix = inner.key_prefix();
    loop {
        let push = tokio::select! {
            _ = shutdown.cancelled() => return Listen::Shutdown,
            push = pushes.recv() => push,
        };
        let Some(push) = push else {
            return Listen::Disconnected;
        };
        match push.kind {
            PushKind::Message => {
                // data = [channel, payload]; the payload is the caller's key.
                if let Some(Value::BulkString(key)) = push.data.get(1) {
                    let full_key = format!("{prefix}{}", String::from_utf8_lossy(key));
                    l1.invalidate(&full_key).await;
                    inner.meters.l1_invalidated();
                }
            }
            PushKind::Disconnection => return Listen::Disconnected,
            _ => {}
        }
    }
}

/// Opens a RESP3 connection and subscribes; the connection must be kept
/// alive for as long as pushes are wanted.
async fn subscribe(
    inner: &Inner,
) -> Result<
    (
        redis::aio::MultiplexedConnection,
        mpsc::UnboundedReceiver<redis::PushInfo>,
    ),
    redis::RedisError,
> {
    let redis_cfg = inner.redis.config();
    // The handle's own address and TLS settings (with Sentinel, the
    // primary it found), so the subscriber reaches the same server.
    let info = inner.redis.connection_info().ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Io, "no Redis address known yet"))
    })?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    // Unbounded because the connection's reader must never block on us;
    // messages are tiny and drained as fast as L1 can drop keys.
    let (sender, receiver) = mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(redis_cfg.connect_timeout))
        .set_response_timeout(Some(redis_cfg.connect_timeout))
        .set_push_sender(sender);
    let mut connection = tokio::time::timeout(
        redis_cfg.connect_timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    connection.subscribe(&inner.channel).await?;
    Ok((connection, receiver))
}
