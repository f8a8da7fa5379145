//! [`ReadThrough`]: L1, then Redis, then one shared loader call per key.
//!
//! A read walks down the layers and stops at the first that can answer:
//!
//! 1. L1 (optional, in process): a fresh entry is a `HIT`.
//! 2. L2 (Redis), under `redis_timeout`: a fresh envelope is a `HIT` and
//!    fills L1. A stale envelope is kept aside as the fail-safe copy.
//!    Any Redis error (down, breaker open, disabled, slow) skips L2 for
//!    this read: the answer will be a `BYPASS`.
//! 3. The loader, through a single flight per key: the first read of a key
//!    spawns the load as a task of its own, later reads of the same key
//!    wait for that task instead of calling the database again. The task
//!    fills L1, hands the result to every waiter, then writes L2; it is
//!    not tied to any one caller, so when a caller gives up at the soft
//!    timeout the load still finishes and refreshes the cache.
//! 4. A loader error, or a loader slower than `soft_timeout` while a stale
//!    copy exists, serves that copy (`STALE`) if it is within `max_stale`.
//!
//! Values are stored as a JSON envelope `{"v", "fresh_until_ms",
//! "stored_ms"}` with wall-clock times, because other instances read the
//! same key; Redis keeps the key for `ttl (± jitter) + max_stale` so the
//! stale copy outlives its freshness.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast_redis::{ConnState, Redis, redis};
use holdfast_resilience::Tasks;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::CacheConfig;
use crate::error::{CacheError, LoadError};
use crate::stats::{CacheState, CacheStats};

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A fresh copy in L1 or Redis.
    Cache,
    /// The loader (the database).
    Db,
    /// A copy past its freshness, served because the loader failed or was
    /// slow; at most `max_stale` old.
    Stale,
}

impl Source {
    /// The form used in JSON bodies: `cache`, `db`, `stale`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Db => "db",
            Source::Stale => "stale",
        }
    }
}

/// An answer and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached<T> {
    /// The value; `None` when the loader said it does not exist.
    pub value: Option<T>,
    /// Where it came from.
    pub source: Source,
    /// Redis could not be used for this read, so the answer came straight
    /// from the loader (`source` is then [`Source::Db`]).
    pub bypass: bool,
}

impl<T> Cached<T> {
    /// The `X-Cache` header value: `HIT`, `MISS`, `STALE` or `BYPASS`.
    pub fn x_cache(&self) -> &'static str {
        match (self.source, self.bypass) {
            (_, true) => "BYPASS",
            (Source::Cache, false) => "HIT",
            (Source::Db, false) => "MISS",
            (Source::Stale, false) => "STALE",
        }
    }
}

/// The stored form, written and read by every instance.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: Option<T>,
    fresh_until_ms: u64,
    stored_ms: u64,
}

/// An L1 entry. The value is type-erased (`Option<T>`) so that one
/// `ReadThrough` serves any `T` without generics on the struct and a hit
/// costs a clone rather than a JSON decode.
#[derive(Clone)]
pub(crate) struct L1Entry {
    value: Arc<dyn Any + Send + Sync>,
    fresh_until: Instant,
}

pub(crate) type L1Cache = moka::future::Cache<String, L1Entry>;

/// What a load task hands its waiters: `Arc<Option<T>>` erased, or the error.
type FlightOutcome = Result<Arc<dyn Any + Send + Sync>, LoadError>;

/// One load under way. Waiters watch the channel; the task sends once.
struct Flight {
    outcome: watch::Receiver<Option<FlightOutcome>>,
    id: u64,
    /// Whether a reader of this flight found Redis usable (a miss, not a
    /// bypass): only then does the loaded value go to Redis, so a read that
    /// went around the cache never fills it behind the next reader's back.
    fill: Arc<AtomicBool>,
}

/// A cloneable read-through cache for one entity (users, products, ...).
#[derive(Clone)]
pub struct ReadThrough {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough")
            .field("entity", &self.inner.entity)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) redis: Redis,
    pub(crate) entity: String,
    cfg: CacheConfig,
    /// `{prefix}:cache:{entity}:`, to which the caller's key is appended.
    key_prefix: String,
    /// `{prefix}:cache:invalidate:{entity}`: where invalidations are
    /// broadcast to the L1 of other instances.
    pub(crate) channel: String,
    pub(crate) l1: Option<L1Cache>,
    /// Loads under way, by full key. Owned by the load tasks: each removes
    /// its own entry when it ends (see `FlightGuard`). A std mutex because
    /// it is held only for a lookup or insert, never across an await.
    flights: Mutex<HashMap<String, Flight>>,
    next_flight_id: AtomicU64,
    /// Bumped by every invalidation; a load that started before an
    /// invalidation does not write its (possibly old) result to the cache.
    epoch: AtomicU64,
    /// Invalidations that did not reach Redis, replayed when it is back
    /// (see [`crate::pending`]).
    pub(crate) pending: crate::pending::Pending,
    pub(crate) meters: crate::meters::Meters,
}

impl ReadThrough {
    /// A cache for `entity` on top of `redis`. Cheap to clone; clones share
    /// L1, single flights and counters.
    ///
    /// With L1 enabled, call [`ReadThrough::start`] so that invalidations
    /// from other instances reach this one.
    pub fn new(redis: Redis, entity: &str, cfg: CacheConfig) -> Self {
        let l1 = cfg.l1.map(|l1| {
            moka::future::Cache::builder()
                .max_capacity(l1.capacity)
                .time_to_live(l1.ttl)
                .build()
        });
        Self {
            inner: Arc::new(Inner {
                redis,
                entity: entity.to_owned(),
                key_prefix: format!("{}:cache:{entity}:", cfg.prefix),
                channel: format!("{}:cache:invalidate:{entity}", cfg.prefix),
                cfg,
                l1,
                flights: Mutex::new(HashMap::new()),
                next_flight_id: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                pending: crate::pending::Pending::default(),
                meters: crate::meters::Meters::new(entity),
            }),
        }
    }

    /// Starts the task that applies other instances' invalidations to L1
    /// (nothing to do without L1), as one of `tasks`. It reconnects with
    /// backoff when its connection breaks and ends when the tasks are asked
    /// to stop; the owner of `tasks` (or the returned handle) awaits it.
    pub fn start(&self, tasks: impl Into<Tasks>) -> tokio::task::JoinHandle<()> {
        let tasks = tasks.into();
        let inner = self.inner.clone();
        tasks.spawn(crate::invalidation::run(inner, tasks.stop_token()))
    }

    /// The Redis key of `key`: `{prefix}:cache:{entity}:{key}`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.key_prefix)
    }

    /// The configuration in use.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    /// Counts since start, for `/health`.
    pub fn stats(&self) -> CacheStats {
        self.inner.meters.snapshot()
    }

    /// Whether the cache is in use, for `/health`.
    pub fn state(&self) -> CacheState {
        if !self.inner.redis.is_enabled() {
            CacheState::Disabled
        } else if self.inner.redis.state() == ConnState::Ready {
            CacheState::Ready
        } else {
            CacheState::Degraded
        }
    }

    /// Reads `key`, calling `load` only when no layer can answer and no
    /// other read of the same key is already loading it.
    ///
    /// # Errors
    /// [`CacheError::Loader`] when the loader failed and there was no stale
    /// copy within `max_stale`.
    pub async fn get<T, F, Fut>(&self, key: &str, load: F) -> Result<Cached<T>, CacheError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, LoadError>> + Send + 'static,
    {
        let inner = &self.inner;
        let full_key = self.redis_key(key);

        if let Some(value) = self.l1_get::<T>(&full_key).await {
            return Ok(inner.answer(value, Source::Cache, false));
        }

        // The stale copy, if Redis had one: (value, wall-clock ms until
        // which it may still be served).
        let mut stale: Option<(Option<T>, u64)> = None;
        let bypass = match inner.l2_get(&full_key).await {
            // A write on this instance could not delete this copy while
            // Redis was away: it is older than the write, so not served.
            Ok(Some(_)) if inner.pending.contains(key) => false,
            Ok(Some(bytes)) => match serde_json::from_slice::<Envelope<T>>(&bytes) {
                Ok(envelope) => {
                    let now = now_ms();
                    if now < envelope.fresh_until_ms {
                        let remaining = Duration::from_millis(envelope.fresh_until_ms - now);
                        inner
                            .l1_put(&full_key, Arc::new(envelope.v.clone()), remaining)
                            .await;
                        return Ok(inner.answer(envelope.v, Source::Cache, false));
                    }
                    let serve_until = envelope
                        .fresh_until_ms
                        .saturating_add(duration_ms(inner.cfg.max_stale));
                    if now < serve_until {
                        stale = Some((envelope.v, serve_until));
                    }
                    false
                }
                Err(err) => {
                    // Another version of the code may have stored another
                    // shape; reloading overwrites it.
                    tracing::warn!(key = %full_key, error = %err, "undecodable cache entry, reloading");
                    false
                }
            },
            Ok(None) => false,
            Err(err) => {
                tracing::debug!(key = %full_key, error = %err, "redis unusable, reading from the loader");
                true
            }
        };

        let outcome = self.load_shared(full_key, bypass, load);
        let result = match &stale {
            // Only a read with something to fall back on gives up early.
            Some(_) => tokio::time::timeout(inner.cfg.soft_timeout, outcome)
                .await
                .unwrap_or_else(|_| Err(LoadError::retryable("loader passed its soft timeout"))),
            None => outcome.await,
        };

        match result {
            Ok(erased) => {
                let value = downcast::<T>(erased)?;
                Ok(inner.answer(value, Source::Db, bypass))
            }
            Err(err) => match stale {
                Some((value, serve_until)) if now_ms() < serve_until => {
                    tracing::info!(entity = %inner.entity, error = %err, "serving a stale copy");
                    Ok(inner.answer(value, Source::Stale, false))
                }
                _ => {
                    inner.meters.read_failed();
                    Err(CacheError::Loader(err))
                }
            },
        }
    }

    /// Deletes `key` from L2 and this instance's L1, and tells the other
    /// instances to drop it from theirs. With Redis unusable the local L1
    /// is cleared, this instance stops trusting the Redis copy, and the
    /// delete and broadcast are replayed as soon as Redis is back (up to
    /// [`crate::pending::MAX_PENDING`] keys).
    pub async fn invalidate(&self, key: &str) {
        let inner = &self.inner;
        let full_key = self.redis_key(key);
        inner.epoch.fetch_add(1, Ordering::SeqCst);
        // A read arriving from now on must not join a load that may return
        // the value from before the write.
        inner
            .flights
            .lock()
            .expect("flights lock poisoned")
            .remove(&full_key);
        if let Some(l1) = &inner.l1 {
            l1.invalidate(&full_key).await;
        }
        let mut pipe = redis::pipe();
        pipe.del(&full_key)
            .ignore()
            .publish(&inner.channel, key)
            .ignore();
        if let Err(err) = inner.redis.pipe::<()>(&pipe, inner.cfg.redis_timeout).await {
            tracing::warn!(key = %full_key, error = %err, "invalidation did not reach redis; kept for replay");
            crate::pending::defer(&self.inner, key);
        } else {
            inner.pending.remove(key);
        }
    }

    /// Fills the cache with values read in bulk, for a warm-up at start:
    /// `load` returns `(key, value)` pairs (typically one query for the
    /// hottest rows), and each is written to Redis in one pipeline, fresh
    /// for the usual jittered TTL, unless the key already has a copy (one
    /// written by a read or by another instance is never overwritten).
    /// L1 is left alone: it fills on the first read.
    ///
    /// Returns how many keys were written. A write (invalidation) on this
    /// instance while `load` runs discards the result, as for a read.
    ///
    /// # Errors
    /// The loader's error, or [`CacheError::Redis`] when Redis is not
    /// usable; the caller may try again later.
    pub async fn warm<T, F, Fut>(&self, load: F) -> Result<usize, CacheError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>, LoadError>>,
    {
        let inner = &self.inner;
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let entries = inner
            .meters
            .time_load(load())
            .await
            .map_err(CacheError::Loader)?;
        if entries.is_empty() || inner.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for (key, value) in &entries {
            let Ok((bytes, keep_ms)) = inner.encode(Some(value), inner.fresh_for(true)) else {
                continue;
            };
            pipe.cmd("SET")
                .arg(self.redis_key(key))
                .arg(bytes)
                .arg("PX")
                .arg(keep_ms)
                .arg("NX");
        }
        // A bulk write gets more time than one cache command: it is off the
        // read path, and a thousand small SETs take a few milliseconds.
        let timeout = inner.cfg.redis_timeout.max(Duration::from_secs(2));
        let written: Vec<Option<String>> = inner
            .redis
            .pipe(&pipe, timeout)
            .await
            .map_err(CacheError::Redis)?;
        let written = written.iter().filter(|r| r.is_some()).count();
        inner.meters.warmed(written as u64);
        Ok(written)
    }

    /// Joins the load of `full_key` under way, or starts one.
    fn load_shared<T, F, Fut>(
        &self,
        full_key: String,
        bypass: bool,
        load: F,
    ) -> impl Future<Output = FlightOutcome> + Send + 'static
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, LoadError>> + Send + 'static,
    {
        let inner = &self.inner;
        let mut receiver = {
            let mut flights = inner.flights.lock().expect("flights lock poisoned");
            if let Some(flight) = flights.get(&full_key) {
                inner.meters.joined_flight();
                if !bypass {
                    flight.fill.store(true, Ordering::SeqCst);
                }
                flight.outcome.clone()
            } else {
                let (sender, receiver) = watch::channel(None);
                let id = inner.next_flight_id.fetch_add(1, Ordering::Relaxed);
                let fill = Arc::new(AtomicBool::new(!bypass));
                flights.insert(
                    full_key.clone(),
                    Flight {
                        outcome: receiver.clone(),
                        id,
                        fill: fill.clone(),
                    },
                );
                // The load runs as a task of its own so that it outlives a
                // caller that gave up at the soft timeout (or was dropped)
                // and still refreshes the cache. It ends when the loader
                // does; the guard removes the flight even if it panics. Like
                // every task of the cache it belongs to the owner of the
                // Redis handle, which awaits it when the role stops.
                let task = LoadTask {
                    inner: inner.clone(),
                    guard: FlightGuard {
                        inner: inner.clone(),
                        key: full_key,
                        id,
                    },
                    epoch: inner.epoch.load(Ordering::SeqCst),
                    fill,
                };
                // After the role has drained nobody waits for a load: it
                // ends when the owner stops rather than hold the stop up.
                let tasks = inner.redis.tasks().clone();
                let load = task.run(load(), sender);
                inner.redis.tasks().spawn(async move {
                    tokio::select! {
                        () = load => {}
                        () = tasks.stopping() => {}
                    }
                });
                receiver
            }
        };
        async move {
            match receiver.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().expect("waited for Some"),
                // The sender dropped without a result: the loader panicked.
                Err(_) => Err(LoadError::retryable("loader task failed")),
            }
        }
    }

    async fn l1_get<T: Clone + 'static>(&self, full_key: &str) -> Option<Option<T>> {
        let entry = self.inner.l1.as_ref()?.get(full_key).await?;
        if Instant::now() >= entry.fresh_until {
            return None;
        }
        entry.value.downcast_ref::<Option<T>>().cloned()
    }
}

impl Inner {
    /// `{prefix}:cache:{entity}:`.
    pub(crate) fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Counts an answer and wraps it.
    fn answer<T>(&self, value: Option<T>, source: Source, bypass: bool) -> Cached<T> {
        self.meters.answered(source, bypass, value.is_some());
        Cached {
            value,
            source,
            bypass,
        }
    }

    async fn l2_get(&self, full_key: &str) -> Result<Option<Vec<u8>>, holdfast_redis::RedisError> {
        self.redis
            .run(self.cfg.redis_timeout, |mut conn| async move {
                redis::cmd("GET")
                    .arg(full_key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await
    }

    async fn l1_put(&self, full_key: &str, value: Arc<dyn Any + Send + Sync>, fresh_for: Duration) {
        if let Some(l1) = &self.l1 {
            let entry = L1Entry {
                value,
                fresh_until: Instant::now() + fresh_for,
            };
            l1.insert(full_key.to_owned(), entry).await;
        }
    }

    /// The stored form of `v`, fresh for `fresh_for` from now, and how long
    /// Redis keeps it: past freshness by `max_stale`, for fail-safe serving.
    fn encode<T: Serialize>(
        &self,
        v: Option<&T>,
        fresh_for: Duration,
    ) -> Result<(Vec<u8>, u64), serde_json::Error> {
        let stored_ms = now_ms();
        let envelope = Envelope {
            v,
            fresh_until_ms: stored_ms.saturating_add(duration_ms(fresh_for)),
            stored_ms,
        };
        let keep_ms = duration_ms(fresh_for + self.cfg.max_stale).max(1);
        Ok((serde_json::to_vec(&envelope)?, keep_ms))
    }

    /// How long a value written now stays fresh: `ttl ± jitter`, or the
    /// negative TTL for "not found".
    fn fresh_for(&self, found: bool) -> Duration {
        if !found {
            return self.cfg.negative_ttl;
        }
        let jitter = self.cfg.ttl_jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        self.cfg.ttl.mul_f64(factor)
    }
}

/// Removes its flight from the map when the load task ends, however it ends.
struct FlightGuard {
    inner: Arc<Inner>,
    key: String,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().expect("flights lock poisoned");
        // An invalidation may have removed this flight and a newer one taken
        // its place; that one is not ours to remove.
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

struct LoadTask {
    inner: Arc<Inner>,
    guard: FlightGuard,
    epoch: u64,
    /// See [`Flight::fill`].
    fill: Arc<AtomicBool>,
}

impl LoadTask {
    async fn run<T, Fut>(self, load: Fut, sender: watch::Sender<Option<FlightOutcome>>)
    where
        T: Serialize + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<T>, LoadError>> + Send + 'static,
    {
        let inner = &self.inner;
        let value = match inner.meters.time_load(load).await {
            Ok(value) => value,
            Err(err) => {
                tracing::warn!(entity = %inner.entity, key = %self.guard.key, error = %err, "loader failed");
                sender.send_replace(Some(Err(err)));
                return;
            }
        };
        let key = &self.guard.key;
        let found = value.is_some();
        let fresh_for = inner.fresh_for(found);
        let value = Arc::new(value);
        // A write happened while this load ran: its result may predate
        // the write, so hand it to the waiters but keep it out of the cache.
        let current = inner.epoch.load(Ordering::SeqCst) == self.epoch;
        if current {
            inner.l1_put(key, value.clone(), fresh_for).await;
        }
        sender.send_replace(Some(Ok(value.clone())));
        if !current || !self.fill.load(Ordering::SeqCst) {
            return;
        }
        let (bytes, keep_ms) = match inner.encode(value.as_ref().as_ref(), fresh_for) {
            Ok(encoded) => encoded,
            Err(err) => {
                tracing::warn!(key = %key, error = %err, "value cannot be encoded, not cached");
                return;
            }
        };
        let write = inner
            .redis
            .run(inner.cfg.redis_timeout, |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(keep_ms)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        if let Err(err) = write {
            tracing::debug!(key = %key, error = %err, "cache write skipped");
        }
    }
}

fn downcast<T: Clone + 'static>(
    erased: Arc<dyn Any + Send + Sync>,
) -> Result<Option<T>, CacheError> {
    erased.downcast_ref::<Option<T>>().cloned().ok_or_else(|| {
        // Two reads of one key with different types joined one flight:
        // a programming error, but not one worth a panic.
        CacheError::Loader(LoadError::permanent("cached value has another type"))
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
