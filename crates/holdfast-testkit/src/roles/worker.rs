//! The worker role of the weather demo, as the ingress and exporter tests
//! start it: on the test's Redis and key prefix, with its admin listener on
//! a free port and a short blocking read, so a stop or an outage is seen
//! quickly.

use std::time::Duration;

use holdfast_core::{Keys, Topic};
use holdfast_services::worker::{WorkerRole, WorkerSettings};
use holdfast_streams::{Handler, WorkerConfig, WorkerStatus};
use tokio_util::sync::CancellationToken;

use super::{local_url, loopback};

/// How long a worker's blocking read waits before it looks around again.
const BLOCK: Duration = Duration::from_millis(200);

/// A worker role that runs until its shutdown token is cancelled.
pub struct RunningWorker {
    /// Base URL of its admin listener (`/health*`, `/metrics`).
    pub admin: String,
    /// What it is doing, as its health report shows it.
    pub status: WorkerStatus,
}

/// Settings of a worker on `topic` of `keys`, reaching Redis at
/// `redis_url`, handling requests at once.
///
/// # Panics
/// If `topic` is not a valid topic name.
pub fn settings(redis_url: String, keys: Keys, topic: &str) -> WorkerSettings {
    let topic = Topic::parse(topic).unwrap_or_else(|error| panic!("topic {topic:?}: {error}"));
    let mut worker = WorkerConfig::new(keys, topic);
    worker.block = BLOCK;
    WorkerSettings {
        admin_listen: loopback(),
        redis: crate::quick_redis_config(redis_url),
        worker,
        processing_time: Duration::ZERO,
    }
}

/// Builds the weather demo's worker with `settings` and runs it until
/// `shutdown` is cancelled.
///
/// # Panics
/// If the role cannot be built (its admin listener cannot bind).
pub async fn spawn(settings: WorkerSettings, shutdown: CancellationToken) -> RunningWorker {
    let role = WorkerRole::build(settings).await.expect("worker builds");
    run(role, shutdown)
}

/// Builds a worker running `handler` with `settings` and runs it until
/// `shutdown` is cancelled.
///
/// # Panics
/// If the role cannot be built.
pub async fn spawn_with<H: Handler>(
    settings: WorkerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> RunningWorker {
    let role = WorkerRole::build_with(settings, handler)
        .await
        .expect("worker builds");
    run(role, shutdown)
}

fn run<H: Handler>(role: WorkerRole<H>, shutdown: CancellationToken) -> RunningWorker {
    let admin = local_url(role.admin_port());
    let status = role.status();
    // Ends when the test cancels `shutdown` (or drops what owns it).
    tokio::spawn(role.run_until_stopped(shutdown));
    RunningWorker { admin, status }
}
