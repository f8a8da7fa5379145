//! The Redis kinds, played on the stack's own redis-server:
//!
//! - `redis_kill`: SIGKILL, as a crash or the OOM killer would; reverted by
//!   starting it again on the same port with the same files.
//! - `redis_stop`: a clean shutdown (SIGTERM); reverted the same way.
//! - `redis_password`: the password changes and every client is
//!   disconnected, so reconnects fail authentication; reverted by setting
//!   the old password again.
//!
//! None of them has fields of its own: `kind = "redis_kill"` is the whole
//! form.

use holdfast_redis::local::LocalRedis;

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
