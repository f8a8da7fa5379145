//! A Redis Sentinel setup of the test's own: a primary, one replica of it,
//! and three sentinels (`redis-server --sentinel`) watching them with a quorum of
//! two, all on free loopback ports, all stopped when the value drops.
//! Failure detection is quick (1 s), so a test sees a failover within a
//! few seconds of killing the primary.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use holdfast_redis::local::{LocalRedis, LocalRedisOptions};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::free_port;

/// The name the sentinels know the primary by.
pub const MASTER: &str = "holdfast";

/// How long the sentinels wait before calling a silent primary down.
pub const DOWN_AFTER: Duration = Duration::from_secs(1);

/// The whole setup.
pub struct TestSentinel {
    /// The primary at start.
    pub primary: LocalRedis,
    /// Its replica at start.
    pub replica: LocalRedis,
    sentinels: Vec<(u16, Child)>,
    _dir: TempDir,
}

impl TestSentinel {
    /// Starts the primary, its replica once it has synchronised, and the
    /// sentinels once they see both.
    ///
    /// # Panics
    /// When a process cannot start or the setup does not come together
    /// (a test set-up failure); the message says which.
    pub async fn start() -> TestSentinel {
        let primary = LocalRedis::start(LocalRedisOptions {
            aof: true,
            appendfsync: Some("always".into()),
            ..LocalRedisOptions::default()
        })
        .await
        .expect("the primary");
        let replica = replica_of(
            &primary,
            LocalRedisOptions {
                aof: true,
                appendfsync: Some("always".into()),
                ..LocalRedisOptions::default()
            },
        )
        .await;
        let dir = tempfile::Builder::new()
            .prefix("holdfast-sentinel-")
            .tempdir()
            .expect("a directory for the sentinels");
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port();
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
            )
            .expect("a sentinel's configuration");
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
                .expect("redis-server --sentinel starts");
            sentinels.push((port, child));
        }
        let setup = TestSentinel {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        for &(port, _) in &setup.sentinels {
            let replica_port = setup.replica.port();
            wait_for(
                Duration::from_secs(20),
                "every sentinel to see the replica and the other sentinels",
                || async move {
                    let url = format!("redis://127.0.0.1:{port}/");
                    let replicas = sentinel_cmd(&url, "replicas").await;
                    let others = sentinel_cmd(&url, "sentinels").await;
                    replicas.is_some_and(|r| r.contains(&replica_port.to_string()))
                        && others.is_some_and(|s| s.matches("127.0.0.1").count() >= 2)
                },
            )
            .await;
        }
        setup
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

    /// The sentinels' log files, for a failing test.
    pub fn logs(&self) -> Vec<PathBuf> {
        (0..self.sentinels.len())
            .map(|n| self._dir.path().join(format!("sentinel-{n}.log")))
            .collect()
    }
}

use holdfast_redis::redis;

/// A replica of `primary`, started with `options` (plus `--replicaof`),
/// returned once its link to the primary is up.
///
/// # Panics
/// When it cannot start or does not synchronise within 10 s.
pub async fn replica_of(primary: &LocalRedis, mut options: LocalRedisOptions) -> LocalRedis {
    options.extra_args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.port().to_string(),
    ]);
    let replica = LocalRedis::start(options).await.expect("the replica");
    wait_for(
        Duration::from_secs(10),
        "the replica's link to the primary",
        || {
            let url = replica.url();
            async move {
                info(&url, "replication")
                    .await
                    .is_some_and(|text| text.contains("master_link_status:up"))
            }
        },
    )
    .await;
    replica
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

pub(crate) async fn wait_for<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "test setup: {what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
