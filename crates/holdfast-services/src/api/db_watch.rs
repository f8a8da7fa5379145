//! The database watch: a background ping whose last outcome is the api's
//! readiness (see `health.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_store::Store;
use tokio_util::sync::CancellationToken;

/// How often the database is pinged for readiness.
const DB_PING_INTERVAL: Duration = Duration::from_secs(1);

/// What the last ping learnt about the database.
#[derive(Clone, Debug, Default)]
pub(super) struct DbStatus {
    pub(super) up: bool,
    /// Stable code of the last failure (`db_unavailable`, …), never its text.
    pub(super) last_error: Option<&'static str>,
}

impl DbStatus {
    /// Up, as the api starts: the store was just opened and migrated.
    pub(super) fn up() -> Self {
        Self {
            up: true,
            last_error: None,
        }
    }
}

/// Pings the database every [`DB_PING_INTERVAL`] and records the outcome
/// in `db` for readiness. Each ping is bounded by the store's acquire
/// timeout; the task ends when `shutdown` is cancelled.
pub(super) async fn watch_database(
    store: Store,
    db: Arc<Mutex<DbStatus>>,
    shutdown: CancellationToken,
) {
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = store.ping() => outcome,
        };
        let status = match outcome {
            Ok(()) => DbStatus::up(),
            Err(err) => {
                tracing::warn!(error = %err, "database ping failed");
                DbStatus {
                    up: false,
                    last_error: Some(err.code()),
                }
            }
        };
        *db.lock().expect("db status lock poisoned") = status;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DB_PING_INTERVAL) => {}
        }
    }
}
