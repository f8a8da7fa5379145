//! A Redis Sentinel setup of the test's own: a primary, one replica of it,
//! and three sentinels watching them with a quorum of two, all on free
//! loopback ports, all stopped when the value drops (see
//! [`holdfast_redis::local_topology`]).

pub use holdfast_redis::local_topology::{DOWN_AFTER, LocalSentinel as TestSentinel, MASTER};

use holdfast_redis::local::{LocalRedis, LocalRedisOptions};

/// Starts a Sentinel setup.
///
/// # Panics
/// When it does not come together (a test set-up failure); the message
/// says why.
pub async fn start() -> TestSentinel {
    TestSentinel::start().await.expect("a sentinel setup")
}

/// A replica of `primary`, started with `options` (plus `--replicaof`),
/// returned once its link to the primary is up.
///
/// # Panics
/// When it cannot start or does not synchronise in time.
pub async fn replica_of(primary: &LocalRedis, options: LocalRedisOptions) -> LocalRedis {
    holdfast_redis::local_topology::replica_of(primary, options)
        .await
        .expect("a replica")
}
