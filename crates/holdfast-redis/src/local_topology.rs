//! Redis topologies of local processes, on free loopback ports, stopped
//! when the value drops: a Sentinel setup (a primary, one replica and
//! three sentinels, quorum two) and a Cluster (primaries with replicas,
//! put together by `redis-cli --cluster create`). Failure detection is
//! quick (1 s), so a failover follows a killed primary within seconds.
//! The chaos scenarios and the tests use them.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::local::{LocalRedis, LocalRedisError, LocalRedisOptions};

/// The name the sentinels know the primary by.
pub const MASTER: &str = "holdfast";

/// How long the sentinels wait before calling a silent primary down.
pub const DOWN_AFTER: Duration = Duration::from_secs(1);

/// How long a cluster node may be silent before the others call it failing.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a topology may take to come together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

fn durable() -> LocalRedisOptions {
    LocalRedisOptions {
        aof: true,
        appendfsync: Some("always".into()),
        own_process_group: true,
        ..LocalRedisOptions::default()
    }
}

/// A primary, one replica of it and three sentinels.
pub struct LocalSentinel {
    /// The primary at start.
    pub primary: LocalRedis,
    /// Its replica at start.
    pub replica: LocalRedis,
    sentinels: Vec<(u16, Child)>,
    dir: TempDir,
}

impl LocalSentinel {
    /// Starts the primary (AOF, `appendfsync always`), its replica once it
    /// has synchronised, and the sentinels once they see both.
    ///
    /// # Errors
    /// A process did not start, or the setup did not come together in time.
    pub async fn start() -> Result<LocalSentinel, LocalRedisError> {
        let primary = LocalRedis::start(durable()).await?;
        let replica = replica_of(&primary, durable()).await?;
        let dir = tempfile::Builder::new()
            .prefix("holdfast-sentinel-")
            .tempdir()?;
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = crate::local::free_loopback_port()?;
            let conf = dir.path().join(format!("sentinel-{n}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} {down}\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.path().display(),
                    log = dir.path().join(format!("sentinel-{n}.log")).display(),
                    primary = primary.port(),
                    down = DOWN_AFTER.as_millis(),
                ),
            )?;
            // `redis-server --sentinel` is what `redis-sentinel` runs; it
            // needs no second package.
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| LocalRedisError::Spawn {
                    binary: "redis-server".into(),
                    source,
                })?;
            sentinels.push((port, child));
        }
        let setup = LocalSentinel {
            primary,
            replica,
            sentinels,
            dir,
        };
        for &(port, _) in &setup.sentinels {
            let replica_port = setup.replica.port();
            wait_for(
                "every sentinel to see the replica and the other sentinels",
                || async move {
                    let url = format!("redis://127.0.0.1:{port}/");
                    let replicas = sentinel_cmd(&url, "replicas").await;
                    let others = sentinel_cmd(&url, "sentinels").await;
                    replicas.is_some_and(|r| r.contains(&replica_port.to_string()))
                        && others.is_some_and(|s| s.matches("127.0.0.1").count() >= 2)
                },
            )
            .await?;
        }
        Ok(setup)
    }

    /// `redis+sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C/holdfast`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// `redis://127.0.0.1:PORT/` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }

    /// Where the sentinels say the primary is now.
    pub async fn primary_port(&self) -> Option<u16> {
        let (port, _) = self.sentinels.first()?;
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(port)
    }

    /// The server the sentinels name as primary now (the primary at start
    /// when they cannot be asked).
    pub async fn current_primary(&mut self) -> &mut LocalRedis {
        if self.primary_port().await == Some(self.replica.port()) {
            &mut self.replica
        } else {
            &mut self.primary
        }
    }

    /// The pids of every process: both servers and the sentinels.
    pub fn pids(&self) -> Vec<u32> {
        self.sentinels
            .iter()
            .filter_map(|(_, child)| child.id())
            .chain(self.primary.pid())
            .chain(self.replica.pid())
            .collect()
    }

    /// The sentinels' log files.
    pub fn logs(&self) -> Vec<PathBuf> {
        (0..self.sentinels.len())
            .map(|n| self.dir.path().join(format!("sentinel-{n}.log")))
            .collect()
    }
}

/// A replica of `primary`, started with `options` (plus `--replicaof`),
/// returned once its link to the primary is up.
///
/// # Errors
/// It did not start, or did not synchronise in time.
pub async fn replica_of(
    primary: &LocalRedis,
    mut options: LocalRedisOptions,
) -> Result<LocalRedis, LocalRedisError> {
    options.extra_args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.port().to_string(),
    ]);
    let replica = LocalRedis::start(options).await?;
    let url = replica.url();
    wait_for("the replica's link to the primary", || {
        let url = url.clone();
        async move {
            info(&url, "replication")
                .await
                .is_some_and(|text| text.contains("master_link_status:up"))
        }
    })
    .await?;
    Ok(replica)
}

/// A Redis Cluster of local nodes.
pub struct LocalCluster {
    /// Every node; the first ones start as primaries.
    pub nodes: Vec<LocalRedis>,
}

impl LocalCluster {
    /// Starts `primaries` primaries with `replicas` replicas each (AOF on,
    /// `appendfsync always`), makes them one cluster, and returns once
    /// every node says the cluster is up and every replica is linked.
    ///
    /// # Errors
    /// A process did not start, `redis-cli --cluster create` failed, or the
    /// cluster did not come together in time.
    pub async fn start(primaries: usize, replicas: usize) -> Result<LocalCluster, LocalRedisError> {
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let mut options = durable();
            options.extra_args = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-node-timeout".into(),
                NODE_TIMEOUT.as_millis().to_string(),
            ];
            nodes.push(LocalRedis::start(options).await?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| LocalRedisError::Spawn {
                binary: "redis-cli".into(),
                source,
            })?;
        if !created.status.success() {
            return Err(LocalRedisError::Topology {
                what: format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&created.stdout),
                    String::from_utf8_lossy(&created.stderr)
                ),
            });
        }
        let mut cluster = LocalCluster { nodes };
        cluster.wait_healthy().await?;
        Ok(cluster)
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

    /// The index of the node serving `key` now, as the live nodes say.
    pub async fn node_of(&self, key: &str) -> Option<usize> {
        for node in &self.nodes {
            if node.pid().is_none() {
                continue;
            }
            let Ok(client) = redis::Client::open(node.url()) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let Ok(slot): Result<i64, _> = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await
            else {
                continue;
            };
            let Ok(ranges): Result<Vec<redis::Value>, _> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
            else {
                continue;
            };
            for range in ranges {
                let redis::Value::Array(parts) = range else {
                    continue;
                };
                let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                    (parts.first(), parts.get(1))
                else {
                    continue;
                };
                if !(*start..=*end).contains(&slot) {
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

    /// Waits until every live node says the cluster is up and every live
    /// replica is linked to its primary.
    ///
    /// # Errors
    /// That did not happen in time.
    pub async fn wait_healthy(&mut self) -> Result<(), LocalRedisError> {
        let urls: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|n| (n.exited().is_none() && n.pid().is_some()).then(|| n.url()))
            .collect();
        for url in urls {
            wait_for("every node to see the cluster up", || {
                let url = url.clone();
                async move {
                    cluster_info(&url)
                        .await
                        .is_some_and(|text| text.contains("cluster_state:ok"))
                }
            })
            .await?;
            wait_for("every replica's link", || {
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
            .await?;
        }
        Ok(())
    }

    /// The pids of every node that runs.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(LocalRedis::pid).collect()
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

/// `SENTINEL what MASTER`, flattened to text.
async fn sentinel_cmd(url: &str, what: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let value: redis::Value = redis::cmd("SENTINEL")
        .arg(what)
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()?;
    let mut texts = Vec::new();
    collect_texts(&value, &mut texts);
    Some(texts.join(" "))
}

fn collect_texts(value: &redis::Value, out: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => out.push(text.clone()),
        redis::Value::Int(n) => out.push(n.to_string()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                collect_texts(item, out);
            }
        }
        redis::Value::Map(pairs) => {
            for (k, v) in pairs {
                collect_texts(k, out);
                collect_texts(v, out);
            }
        }
        _ => {}
    }
}

/// Polls `check` until it holds; an error naming `what` after
/// [`SETUP_TIMEOUT`].
async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<(), LocalRedisError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while !check().await {
        if tokio::time::Instant::now() >= give_up {
            return Err(LocalRedisError::Topology {
                what: format!("{what} did not happen within {SETUP_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
