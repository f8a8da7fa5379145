//! Invalidations that could not reach Redis, and their replay.
//!
//! A write while Redis is unreachable deletes nothing there: when Redis
//! comes back (restarted from its AOF or RDB file, or after a network
//! partition) it still holds the copy from before the write, and every
//! instance would serve it until its TTL ran out. So a failed invalidation
//! is remembered here, and:
//!
//! - reads on this instance ignore the Redis copy of a remembered key
//!   (they load from the database instead);
//! - one task waits for Redis and replays the deletes and broadcasts in
//!   one pipeline, then forgets the keys.
//!
//! Other instances can read the old copy in the moment between Redis
//! returning and the replay (the replay starts as soon as this instance's
//! connection is ready again). The set is bounded by [`MAX_PENDING`]; past
//! it, keys are dropped with a warning and their old copies age out with
//! their TTL.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use holdfast_redis::redis;
use holdfast_resilience::Backoff;

use crate::read_through::Inner;

/// Most invalidations kept for replay per entity.
pub const MAX_PENDING: usize = 10_000;

/// How long one wait for Redis lasts before the replay task checks again
/// whether it still has work (and whether Redis was switched off).
const READY_WAIT: Duration = Duration::from_secs(5);

/// Delay after a replay attempt that failed although Redis looked ready.
const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// The remembered keys (caller keys, without the prefix).
#[derive(Default)]
pub(crate) struct Pending {
    keys: Mutex<HashSet<String>>,
    /// `keys.len()`, readable without the lock: the read path checks it
    /// on every Redis hit, and it is almost always zero.
    len: AtomicUsize,
    /// A replay task is running.
    replaying: AtomicBool,
}

impl Pending {
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.len.load(Ordering::Acquire) > 0 && self.lock().contains(key)
    }

    pub(crate) fn remove(&self, key: &str) {
        if self.len.load(Ordering::Acquire) > 0 {
            let mut keys = self.lock();
            keys.remove(key);
            self.len.store(keys.len(), Ordering::Release);
        }
    }

    /// Remembers `key`; false when the set is full.
    fn insert(&self, key: &str) -> bool {
        let mut keys = self.lock();
        if keys.len() >= MAX_PENDING && !keys.contains(key) {
            return false;
        }
        keys.insert(key.to_owned());
        self.len.store(keys.len(), Ordering::Release);
        true
    }

    fn snapshot(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn forget(&self, done: &[String]) {
        let mut keys = self.lock();
        for key in done {
            keys.remove(key);
        }
        self.len.store(keys.len(), Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Held for a lookup or an insert, never across an await.
        self.keys
            .lock()
            .expect("pending invalidations lock poisoned")
    }
}

/// Remembers a failed invalidation of `key` and makes sure a replay task
/// runs.
pub(crate) fn defer(inner: &Arc<Inner>, key: &str) {
    if !inner.pending.insert(key) {
        tracing::warn!(
            entity = %inner.entity,
            max = MAX_PENDING,
            "too many invalidations waiting for redis; this one is dropped and its old copy ages out with its TTL"
        );
        return;
    }
    if !inner.pending.replaying.swap(true, Ordering::AcqRel) {
        // The replay works on Redis's behalf, so it belongs to the owner of
        // the Redis handle, which stops and awaits it with the supervisor.
        inner.redis.tasks().spawn(replay(inner.clone()));
    }
}

/// Replays the remembered invalidations once Redis is ready; ends when
/// none is left, when Redis is switched off, or when the owner of the Redis
/// handle stops (what is left then ages out with its TTL, as when the
/// process dies).
async fn replay(inner: Arc<Inner>) {
    let tasks = inner.redis.tasks().clone();
    tokio::select! {
        () = replay_until_done(&inner) => {}
        () = tasks.stopping() => inner.pending.replaying.store(false, Ordering::Release),
    }
}

async fn replay_until_done(inner: &Inner) {
    let mut attempt = 0;
    loop {
        let keys = inner.pending.snapshot();
        if keys.is_empty() {
            inner.pending.replaying.store(false, Ordering::Release);
            // A key deferred between the snapshot and the store above saw
            // `replaying` still true and spawned nothing: take it over.
            if inner.pending.len.load(Ordering::Acquire) == 0
                || inner.pending.replaying.swap(true, Ordering::AcqRel)
            {
                return;
            }
            continue;
        }
        if !inner.redis.is_enabled() {
            inner.pending.replaying.store(false, Ordering::Release);
            return;
        }
        if !inner.redis.wait_ready(READY_WAIT).await {
            continue;
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.del(format!("{}{key}", inner.key_prefix()))
                .ignore()
                .publish(&inner.channel, key)
                .ignore();
        }
        let timeout = inner
            .redis
            .config()
            .command_timeout
            .max(Duration::from_secs(1));
        match inner.redis.pipe::<()>(&pipe, timeout).await {
            Ok(()) => {
                tracing::info!(entity = %inner.entity, keys = keys.len(), "invalidations replayed after redis returned");
                inner.pending.forget(&keys);
                attempt = 0;
            }
            Err(err) => {
                tracing::debug!(entity = %inner.entity, error = %err, "invalidation replay failed; retrying");
                tokio::time::sleep(RETRY.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
