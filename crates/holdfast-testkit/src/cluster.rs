//! A Redis Cluster of the test's own: three primaries with one replica
//! each, on free loopback ports, put together by `redis-cli --cluster
//! create`, all stopped when the value drops. Failure detection is quick
//! (`cluster-node-timeout` 1 s), so a replica takes over within a few
//! seconds of its primary being killed.

use std::time::Duration;

use holdfast_redis::local::{LocalRedis, LocalRedisOptions};
use holdfast_redis::redis;

use crate::sentinel::wait_for;

/// How long a node may be silent before the others call it failing.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// The whole cluster.
pub struct TestCluster {
    /// Every node; the first three start as primaries.
    pub nodes: Vec<LocalRedis>,
}

impl TestCluster {
    /// Starts `primaries` primaries with `replicas` replicas each (AOF on,
    /// `appendfsync always`), makes them one cluster, and returns once
    /// every node says the cluster is up.
    ///
    /// # Panics
    /// When a process cannot start or the cluster does not come together
    /// (a test set-up failure); the message says which.
    pub async fn start(primaries: usize, replicas: usize) -> TestCluster {
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let node = LocalRedis::start(LocalRedisOptions {
                aof: true,
                appendfsync: Some("always".into()),
                extra_args: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-node-timeout".into(),
                    NODE_TIMEOUT.as_millis().to_string(),
                    // A primary whose replica took over must not serve
                    // writes it would lose; the default, said out loud.
                    "--cluster-require-full-coverage".into(),
                    "yes".into(),
                ],
                ..LocalRedisOptions::default()
            })
            .await
            .expect("a cluster node");
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .await
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = TestCluster { nodes };
        for node in &cluster.nodes {
            let url = node.url();
            wait_for(
                Duration::from_secs(20),
                "every node to see the cluster up",
                || {
                    let url = url.clone();
                    async move {
                        cluster_info(&url)
                            .await
                            .is_some_and(|text| text.contains("cluster_state:ok"))
                    }
                },
            )
            .await;
        }
        // Every replica linked to its primary, so a takeover loses nothing
        // the test wrote before killing one.
        for node in &cluster.nodes {
            let url = node.url();
            wait_for(Duration::from_secs(20), "every replica's link", || {
                let url = url.clone();
                async move {
                    match info(&url, "replication").await {
                        Some(text) if text.contains("role:slave") => {
                            text.contains("master_link_status:up")
                        }
                        Some(_) => true,
                        None => false,
                    }
                }
            })
            .await;
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:A,127.0.0.1:B,…` naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The node serving `key` now (asked of the nodes that answer).
    pub async fn node_of(&self, key: &str) -> Option<usize> {
        for node in &self.nodes {
            let Ok(client) = redis::Client::open(node.url()) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let Ok(slot): Result<u16, _> = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await
            else {
                continue;
            };
            let Ok(slots): Result<Vec<redis::Value>, _> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
            else {
                continue;
            };
            for range in slots {
                let redis::Value::Array(parts) = range else {
                    continue;
                };
                let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                    (parts.first(), parts.get(1))
                else {
                    continue;
                };
                if !(*start..=*end).contains(&i64::from(slot)) {
                    continue;
                }
                let Some(redis::Value::Array(primary)) = parts.get(2) else {
                    continue;
                };
                let Some(redis::Value::Int(port)) = primary.get(1) else {
                    continue;
                };
                return self.nodes.iter().position(|n| i64::from(n.port()) == *port);
            }
        }
        None
    }

    /// Waits until every live node says the cluster is up again (after a
    /// replica took over from a killed primary).
    ///
    /// # Panics
    /// When that does not happen within `within`.
    pub async fn wait_healthy(&mut self, within: Duration) {
        let urls: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|n| (n.exited().is_none() && n.pid().is_some()).then(|| n.url()))
            .collect();
        for url in urls {
            wait_for(within, "the cluster to be up again", || {
                let url = url.clone();
                async move {
                    cluster_info(&url)
                        .await
                        .is_some_and(|text| text.contains("cluster_state:ok"))
                }
            })
            .await;
        }
    }
}

async fn cluster_info(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .ok()
}

async fn info(url: &str, section: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .ok()
}
