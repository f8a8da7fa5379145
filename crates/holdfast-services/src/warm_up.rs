//! The cache warm-up of the api role: at start, the hottest products (the
//! first `count` by id, and the first page of the product list) are read
//! from the database in one query and written to Redis in one pipeline.
//!
//! It runs in the background and never delays readiness: the api answers
//! from the first moment, reads that arrive before the warm-up are ordinary
//! misses. It waits for Redis (a warm-up has nothing to fill while Redis is
//! down), retries a failed attempt a few times with backoff, and gives up
//! quietly; `/health` shows how it went.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_cache::{CacheError, ReadThrough};
use holdfast_redis::Redis;
use holdfast_resilience::Backoff;
use holdfast_store::{Product, Store};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::load_error;

/// How long the warm-up waits for Redis before giving up: past this the
/// cache fills through ordinary reads.
const REDIS_PATIENCE: Duration = Duration::from_secs(60);
/// Attempts at the query and the write.
const ATTEMPTS: u32 = 3;

/// Where the warm-up stands, for `/health`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WarmUp {
    /// Switched off (`count` 0, or Redis disabled).
    Off,
    /// Waiting for Redis or loading.
    Running,
    /// Finished: `keys` written (keys that already had a copy are kept
    /// and not counted) in `millis`.
    Done {
        /// Keys written.
        keys: usize,
        /// Time from start to finish of the work, Redis wait excluded.
        millis: u64,
    },
    /// Gave up; reads fill the cache as usual.
    Failed {
        /// Stable reason: `redis_unavailable`, `db_unavailable`, ...
        reason: String,
    },
}

/// What to warm and where to report.
pub(crate) struct WarmUpTask {
    pub(crate) products: ReadThrough,
    pub(crate) store: Store,
    pub(crate) redis: Redis,
    /// Products by id to load (the first `count` ids).
    pub(crate) count: u32,
    /// The product list page to fill (`page:{limit}:0`).
    pub(crate) page_limit: u32,
    pub(crate) status: Arc<Mutex<WarmUp>>,
}

impl WarmUpTask {
    fn set(&self, status: WarmUp) {
        *self.status.lock().expect("warm-up status lock poisoned") = status;
    }

    /// Runs the warm-up; ends early when `shutdown` is cancelled.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        if self.count == 0 || !self.redis.is_enabled() {
            self.set(WarmUp::Off);
            return;
        }
        self.set(WarmUp::Running);
        let ready = tokio::select! {
            _ = shutdown.cancelled() => return,
            ready = self.redis.wait_ready(REDIS_PATIENCE) => ready,
        };
        if !ready {
            tracing::info!("cache warm-up skipped: redis did not become ready");
            self.set(WarmUp::Failed {
                reason: "redis_unavailable".into(),
            });
            return;
        }
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = self.once() => outcome,
            };
            match outcome {
                Ok(keys) => {
                    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(keys, millis, "cache warmed");
                    self.set(WarmUp::Done { keys, millis });
                    return;
                }
                Err(err) => {
                    tracing::warn!(attempt, error = %err, "cache warm-up failed");
                    last = match &err {
                        CacheError::Loader(load) => load.to_string(),
                        CacheError::Redis(_) => "redis_unavailable".into(),
                    };
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.delay(attempt)) => {}
            }
        }
        self.set(WarmUp::Failed { reason: last });
    }

    /// One attempt: one query, then one pipeline per cache shape.
    async fn once(&self) -> Result<usize, CacheError> {
        let store = self.store.clone();
        let count = self.count;
        let mut rows: Vec<Product> = Vec::new();
        let by_id = self
            .products
            .warm(|| async {
                let loaded = store.products(count, 0).await.map_err(load_error)?;
                rows.clone_from(&loaded);
                Ok(loaded
                    .into_iter()
                    .map(|p| (p.id.to_string(), p))
                    .collect::<Vec<_>>())
            })
            .await?;
        // The first page is a prefix of the rows just read (no second
        // query) when they are at least a page, or the whole table.
        let page_len = usize::try_from(self.page_limit).unwrap_or(usize::MAX);
        let whole_table = u32::try_from(rows.len()).is_ok_and(|n| n < count);
        let page = if rows.len() >= page_len || whole_table {
            self.products
                .warm(|| async {
                    rows.truncate(page_len);
                    Ok(vec![(format!("page:{}:0", self.page_limit), rows)])
                })
                .await?
        } else {
            0
        };
        Ok(by_id + page)
    }
}
