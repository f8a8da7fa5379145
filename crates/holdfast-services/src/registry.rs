//! The instance registry: every role process announces itself in Redis, so
//! the dashboard and operators can find each instance's admin listener
//! without a list kept by hand.
//!
//! An entry is one string key per instance, `{prefix}:instance:{id}`, whose
//! value is the JSON of an [`Instance`]. The role writes it at start and
//! every [`REFRESH`] with a TTL of [`TTL`], so an instance that dies without
//! a word disappears within the TTL; one that stops cleanly deletes its
//! entry ([`Registration::leave`], after its listeners have drained and
//! before its Redis connection closes). The refresh loop is one of the
//! role's [`Tasks`]. While Redis is down the loop
//! keeps trying at its pace; the entry comes back with Redis.
//!
//! [`instances`] lists the entries with `SCAN` (never `KEYS`) and one `MGET`.

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_core::{Deadline, Keys};
use holdfast_redis::redis::{self, Value};
use holdfast_redis::{Redis, RedisError};
use holdfast_resilience::Tasks;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often a live instance rewrites its entry.
pub const REFRESH: Duration = Duration::from_secs(5);

/// How long an entry outlives the last refresh: three refreshes, so one
/// slow write does not make a live instance vanish.
pub const TTL: Duration = Duration::from_secs(15);

/// How long a clean stop waits for its entry to be deleted.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a failed write once Redis is ready again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// Keys examined per `SCAN` call when listing.
const SCAN_COUNT: usize = 1000;

/// Entries listed at most, so a keyspace full of look-alike keys cannot
/// make one listing unbounded.
const MAX_INSTANCES: usize = 10_000;

/// One running role process, as it announces itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `ingress`, `worker`, `api`, `exporter`, …
    pub role: String,
    /// Unique per process and role: `{role}-{host}-{pid}-{random}`.
    pub instance: String,
    /// The holdfast version it runs.
    pub version: String,
    /// Where its admin listener answers (`/health`, `/metrics`, `/logs`).
    pub admin_url: Option<String>,
    /// Where its public listener answers, if it has one.
    pub public_url: Option<String>,
    /// When it started, in unix milliseconds.
    pub started_unix_ms: u64,
}

impl Instance {
    /// An entry for `role` with a fresh id, its listeners given by their
    /// bound addresses.
    pub fn new(role: &str, admin: Option<SocketAddr>, public: Option<SocketAddr>) -> Self {
        let host = host_name();
        Self {
            role: role.to_owned(),
            instance: format!(
                "{role}-{host}-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            admin_url: admin.map(|addr| url_of(addr, &host)),
            public_url: public.map(|addr| url_of(addr, &host)),
            started_unix_ms: Deadline::now_unix_ms(),
        }
    }
}

/// The variable that names the host other instances reach this one by,
/// in place of the machine's name: a pod's IP on Kubernetes, whose pod
/// names cluster DNS does not resolve.
pub const ADVERTISE_HOST_ENV: &str = "HOLDFAST_ADVERTISE_HOST";

/// This machine's name, as other machines would reach it.
fn host_name() -> String {
    if let Ok(host) = std::env::var(ADVERTISE_HOST_ENV)
        && !host.trim().is_empty()
    {
        return host.trim().to_owned();
    }
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `http://addr`, with the host name in place of an address bound to every
/// interface (which no client can connect to as such).
fn url_of(addr: SocketAddr, host: &str) -> String {
    if addr.ip().is_unspecified() {
        if host.contains(':') && !host.starts_with('[') {
            // An IPv6 address, as a URL writes it.
            return format!("http://[{host}]:{}", addr.port());
        }
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// A registered instance; [`Registration::leave`] deletes its entry.
#[derive(Debug)]
pub struct Registration {
    leave: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// Deletes the entry now (a clean stop) and waits for that, at most
    /// [`LEAVE_TIMEOUT`]. Call it before the role stops its tasks: the
    /// delete needs the role's Redis connection.
    pub async fn leave(mut self) {
        self.leave.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, task).await;
        }
    }
}

/// Registers `instance` under `keys` as one of `tasks`: written now and
/// every [`REFRESH`] until [`Registration::leave`] deletes it, or until
/// the tasks are asked to stop (then it expires with its TTL).
pub fn register(redis: &Redis, keys: &Keys, instance: Instance, tasks: &Tasks) -> Registration {
    let leave = CancellationToken::new();
    if !redis.is_enabled() {
        return Registration { leave, task: None };
    }
    let key = keys.instance(&instance.instance);
    let value = match serde_json::to_string(&instance) {
        Ok(value) => value,
        Err(err) => {
            tracing::warn!(error = %err, "instance entry cannot be written; not registered");
            return Registration { leave, task: None };
        }
    };
    let redis = redis.clone();
    let owner = tasks.clone();
    let leaving = leave.clone();
    let task = tasks.spawn(async move {
        loop {
            let write = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .clone();
            let written = redis.cmd::<()>(&write).await;
            let pause = async {
                match written {
                    Ok(()) => tokio::time::sleep(REFRESH).await,
                    Err(err) => {
                        tracing::debug!(error = %err, "instance entry not written; trying again");
                        // Again as soon as Redis is back, but never in a
                        // tight loop against a Redis that answers and
                        // refuses.
                        redis.wait_ready(REFRESH).await;
                        tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                    }
                }
            };
            tokio::select! {
                () = owner.stopping() => return,
                () = leaving.cancelled() => break,
                () = pause => {}
            }
        }
        if let Err(err) = redis.cmd::<()>(redis::cmd("DEL").arg(&key)).await {
            tracing::debug!(error = %err, "instance entry not deleted; it expires with its TTL");
        }
    });
    Registration {
        leave,
        task: Some(task),
    }
}

/// Every registered instance under `keys`, sorted by role and id; entries
/// that do not read as an [`Instance`] are skipped.
///
/// # Errors
/// Redis did not answer.
pub async fn instances(redis: &Redis, keys: &Keys) -> Result<Vec<Instance>, RedisError> {
    let pattern = keys.instance_pattern();
    // On every primary of a cluster.
    let mut names = redis
        .scan(
            &pattern,
            SCAN_COUNT,
            MAX_INSTANCES,
            redis.config().command_timeout,
        )
        .await?;
    names.sort_unstable();
    names.dedup();
    names.truncate(MAX_INSTANCES);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Value> = redis.cmd(redis::cmd("MGET").arg(&names)).await?;
    let mut found: Vec<Instance> = values
        .iter()
        .filter_map(|value| match value {
            Value::BulkString(bytes) => serde_json::from_slice(bytes).ok(),
            _ => None,
        })
        .collect();
    found.sort_by(|a, b| (&a.role, &a.instance).cmp(&(&b.role, &b.instance)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_on_every_interface_is_advertised_by_host_name() {
        let any: SocketAddr = "0.0.0.0:5010".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5010".parse().unwrap();
        assert_eq!(url_of(any, "box"), "http://box:5010");
        assert_eq!(url_of(local, "box"), "http://127.0.0.1:5010");
        // An advertised pod IP, v4 or v6.
        assert_eq!(url_of(any, "10.1.2.3"), "http://10.1.2.3:5010");
        assert_eq!(url_of(any, "fd00::7"), "http://[fd00::7]:5010");
    }

    #[test]
    fn each_entry_has_an_id_of_its_own() {
        let a = Instance::new("worker", None, None);
        let b = Instance::new("worker", None, None);
        assert!(a.instance.starts_with("worker-"));
        assert_ne!(a.instance, b.instance);
    }
}
