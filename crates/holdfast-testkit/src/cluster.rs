//! A Redis Cluster of the test's own: primaries with replicas, on free
//! loopback ports, put together by `redis-cli --cluster create`, all
//! stopped when the value drops (see [`holdfast_redis::local_topology`]).

pub use holdfast_redis::local_topology::{LocalCluster as TestCluster, NODE_TIMEOUT};

/// Starts `primaries` primaries with `replicas` replicas each.
///
/// # Panics
/// When the cluster does not come together (a test set-up failure); the
/// message says why.
pub async fn start(primaries: usize, replicas: usize) -> TestCluster {
    TestCluster::start(primaries, replicas)
        .await
        .expect("a local cluster")
}
