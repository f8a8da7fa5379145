//! The Redis kinds, played on the stack's own redis-server:
//!
//! - `redis_kill`: SIGKILL, as a crash or the OOM killer would; reverted by
//!   starting it again on the same port with the same files.
//! - `redis_stop`: a clean shutdown (SIGTERM); reverted the same way.
//! - `redis_password`: the password changes and every client is
//!   disconnected, so reconnects fail authentication; reverted by setting
//!   the old password again.
//!
//! - `redis_primary_kill`: SIGKILL to the primary of a Sentinel or Cluster
//!   topology, so that a replica takes over; reverted by starting it again
//!   on the same port with the same files, when the sentinels (or the
//!   cluster) make it a replica of the new primary.
//!
//! None of them has fields of its own: `kind = "redis_kill"` is the whole
//! form.

use holdfast_core::{Keys, Topic};
use holdfast_redis::local::LocalRedis;

use crate::stack::LocalTopology;

use super::FaultLog;

/// The redis-server killed with SIGKILL.
pub(super) async fn kill(redis: &mut LocalRedis, label: &str, log: &impl FaultLog) {
    redis.kill9().await;
    log.fault(format!(
        "fault start: {label} (redis-server killed with SIGKILL)"
    ));
}

/// The redis-server shut down cleanly.
pub(super) async fn stop(redis: &mut LocalRedis, label: &str, log: &impl FaultLog) {
    redis.stop().await;
    log.fault(format!("fault start: {label} (redis-server shut down)"));
}

/// Reverts [`kill`] and [`stop`].
pub(super) async fn start_again(redis: &mut LocalRedis, label: &str, log: &impl FaultLog) {
    match redis.restart().await {
        Ok(()) => log.fault(format!("fault end: {label} (redis-server started again)")),
        Err(e) => log.fault(format!("redis-server did not start again: {e}")),
    }
}

/// Kills the primary of `topology`: the one the sentinels name, or the
/// cluster node serving the stack topic's first partition. Its port, for
/// [`start_node_again`].
pub(super) async fn kill_primary(
    topology: &mut LocalTopology,
    label: &str,
    log: &impl FaultLog,
) -> Option<u16> {
    let node = match topology {
        LocalTopology::Sentinel(setup) => setup.current_primary().await,
        LocalTopology::Cluster(cluster) => {
            let topic = Topic::parse("weather").expect("a valid topic name");
            let key = Keys::default().request_stream(&topic, 0);
            let Some(index) = cluster.node_of(&key).await else {
                log.fault(format!("{label}: no cluster node serves {key}"));
                return None;
            };
            &mut cluster.nodes[index]
        }
    };
    let port = node.port();
    node.kill9().await;
    log.fault(format!(
        "fault start: {label} (primary 127.0.0.1:{port} killed with SIGKILL)"
    ));
    Some(port)
}

/// Reverts [`kill_primary`]: the node on `port` starts again with its files.
pub(super) async fn start_node_again(
    topology: &mut LocalTopology,
    port: u16,
    label: &str,
    log: &impl FaultLog,
) {
    let node = match topology {
        LocalTopology::Sentinel(setup) => [&mut setup.primary, &mut setup.replica]
            .into_iter()
            .find(|n| n.port() == port),
        LocalTopology::Cluster(cluster) => cluster.nodes.iter_mut().find(|n| n.port() == port),
    };
    match node.map(LocalRedis::restart) {
        Some(restart) => match restart.await {
            Ok(()) => log.fault(format!(
                "fault end: {label} (127.0.0.1:{port} started again; it rejoins as a replica)"
            )),
            Err(e) => log.fault(format!("127.0.0.1:{port} did not start again: {e}")),
        },
        None => log.fault(format!("fault end: {label} (no node on port {port})")),
    }
}

/// Changes the password from `original` and disconnects every client; the
/// password to restore, or `None` when it could not be changed.
pub(super) async fn change_password(
    redis: &mut LocalRedis,
    original: String,
    label: &str,
    log: &impl FaultLog,
) -> Option<String> {
    let changed = format!("{original}-changed");
    if let Err(e) = redis.config_set("requirepass", &changed).await {
        log.fault(format!("could not change the password: {e}"));
        return None;
    }
    let killed = kill_clients(&redis.url()).await;
    log.fault(format!(
        "fault start: {label} ({killed} client connections closed)"
    ));
    Some(original)
}

/// Reverts [`change_password`].
pub(super) async fn restore_password(
    redis: &mut LocalRedis,
    original: &str,
    label: &str,
    log: &impl FaultLog,
) {
    match redis.config_set("requirepass", original).await {
        Ok(()) => log.fault(format!("fault end: {label} (password restored)")),
        Err(e) => log.fault(format!("could not restore the password: {e}")),
    }
}

/// Closes every normal client connection of the server (not this one), so
/// that the roles reconnect and meet the new password.
async fn kill_clients(url: &str) -> i64 {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut conn)
        .await
        .unwrap_or(0)
}
