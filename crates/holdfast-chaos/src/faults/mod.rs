//! Every fault a scenario can play, each kind in one place: its form in a
//! scenario file, how it is applied to a running stack and how it is
//! reverted.
//!
//! | kind | where | applied | reverted |
//! |------|-------|---------|----------|
//! | `redis_kill`, `redis_stop`, `redis_password` | [`redis`] | SIGKILL, clean shutdown, or a new password with every client disconnected | started again, or the old password set again |
//! | `redis_primary_kill` | [`redis`] | SIGKILL to the primary of a Sentinel or Cluster topology | started again; it rejoins as a replica |
//! | `proxy` | [`network`] | a network [`Fault`] added to the stack's fault proxy | removed from it |
//! | `worker_kill` | [`workers`] | workers killed at random while it lasts | each started again after a while |
//!
//! [`FaultAction::play`] applies one, holds it until its end, and reverts
//! it. The scenario runner calls it for every step of a timeline; anything
//! else holding a running [`Stack`] (a dashboard playing a fault live) calls
//! the same. What a fault does is told to a [`FaultLog`].

pub mod network;
pub mod redis;
pub mod workers;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use network::{Direction, Fault, ProxyFault, ProxyTarget};
pub use workers::WorkerKill;

use crate::proxy::FaultId;
use crate::scenario::{StackSpec, Topology};
use crate::stack::Stack;

/// A running stack, shared by the faults playing on it and whoever else
/// acts on it (the runner). A fault holds the lock while it applies or
/// reverts itself, and for each worker it kills or restarts, never for as
/// long as it lasts, so faults can overlap.
pub type SharedStack = Arc<tokio::sync::Mutex<Stack>>;

/// Where a playing fault tells what it does: the runner keeps these lines
/// as the report's events.
pub trait FaultLog: Clone + Send + Sync + 'static {
    /// A line about the fault itself: started, ended, or could not be.
    fn fault(&self, what: String);
    /// A line about one process the fault acted on (`worker-2`, ...).
    fn process(&self, process: &str, what: String);
}

/// What a fault does: its kind and the kind's own fields, as written in a
/// scenario's `[[fault]]` (the timeline's `at` and `for` are
/// [`FaultStep`](crate::scenario::FaultStep)'s).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// SIGKILL to redis-server; restarted (same port, same files) when the
    /// fault ends.
    RedisKill,
    /// Redis shut down cleanly (SIGTERM) and started again when it ends.
    RedisStop,
    /// Redis's password changes and every client is disconnected; the old
    /// password is set again when it ends.
    RedisPassword,
    /// SIGKILL to the primary of a replicated topology (with Sentinel, the
    /// server the sentinels name; on a cluster, the primary of the topic's
    /// first partition), so a replica takes over; started again when the
    /// fault ends, when it rejoins as a replica.
    RedisPrimaryKill,
    /// A network fault between a role and a dependency.
    Proxy(ProxyFault),
    /// Workers killed with SIGKILL, one at random every `every`, each
    /// restarted after `restart_after`.
    WorkerKill(WorkerKill),
}

/// What it takes to end a fault that was applied.
enum Undo {
    StartRedisAgain,
    StartNodeAgain(u16),
    RestorePassword(String),
    RemoveProxyFault(ProxyTarget, FaultId),
    Nothing,
}

impl FaultAction {
    /// Stable kind name, as written (`redis_kill`, `proxy`, ...).
    pub fn kind(&self) -> String {
        serde_kind(self).unwrap_or_else(|| "fault".into())
    }

    /// The label reports show when the scenario gives the step no name.
    pub fn default_label(&self) -> String {
        match self {
            FaultAction::RedisKill => "redis SIGKILL".into(),
            FaultAction::RedisStop => "redis stopped".into(),
            FaultAction::RedisPassword => "redis password changed".into(),
            FaultAction::RedisPrimaryKill => "redis primary SIGKILL".into(),
            FaultAction::Proxy(proxy) => proxy.default_label(),
            FaultAction::WorkerKill(_) => "workers SIGKILL".into(),
        }
    }

    /// Whether it takes Redis away from the roles (cache reads then count
    /// against availability while it is active).
    pub fn takes_redis_away(&self) -> bool {
        match self {
            FaultAction::RedisKill
            | FaultAction::RedisStop
            | FaultAction::RedisPassword
            | FaultAction::RedisPrimaryKill => true,
            FaultAction::Proxy(proxy) => proxy.target == ProxyTarget::Redis,
            FaultAction::WorkerKill(_) => false,
        }
    }

    /// Whether a stack started from `spec` has what this fault acts on;
    /// the reason, naming the step by `label`, when it has not.
    pub fn check_stack(&self, label: &str, spec: &StackSpec) -> Result<(), String> {
        match self {
            FaultAction::Proxy(proxy) => proxy.check_stack(label, spec),
            FaultAction::RedisPassword if spec.redis_password.is_none() => {
                Err("a redis_password fault needs stack.redis_password".into())
            }
            FaultAction::RedisPrimaryKill if spec.topology == Topology::Single => Err(format!(
                "{label}: a redis_primary_kill fault needs stack.topology = \"sentinel\" or \"cluster\""
            )),
            FaultAction::RedisKill | FaultAction::RedisStop
                if spec.topology != Topology::Single =>
            {
                Err(format!(
                    "{label}: on a {} topology, kill its primary with redis_primary_kill",
                    spec.topology.as_str()
                ))
            }
            _ => Ok(()),
        }
    }

    /// Applies the fault to `stack`, holds it until `until` (or until
    /// `cancel`), then reverts it. Every step is told to `log`, the step
    /// named by `label`.
    pub async fn play(
        &self,
        label: &str,
        stack: &SharedStack,
        log: &impl FaultLog,
        until: Instant,
        cancel: &CancellationToken,
    ) {
        let undo = self.apply(label, stack, log).await;
        if let FaultAction::WorkerKill(kill) = self {
            kill.run(stack, log, until, cancel).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = cancel.cancelled() => {}
            }
        }
        revert(undo, label, stack, log).await;
    }

    async fn apply(&self, label: &str, stack: &SharedStack, log: &impl FaultLog) -> Undo {
        let mut stack = stack.lock().await;
        let stack = &mut *stack;
        if let FaultAction::RedisPrimaryKill = self {
            return match stack.topology.as_mut() {
                Some(topology) => redis::kill_primary(topology, label, log)
                    .await
                    .map_or(Undo::Nothing, Undo::StartNodeAgain),
                None => {
                    log.fault(format!("{label}: the stack runs no replicated topology"));
                    Undo::Nothing
                }
            };
        }
        if self.takes_redis_away()
            && !matches!(self, FaultAction::Proxy(_))
            && stack.redis.is_none()
        {
            log.fault(format!(
                "{label}: the stack has no redis-server of its own to act on"
            ));
            return Undo::Nothing;
        }
        match (self, stack.redis.as_mut()) {
            (FaultAction::RedisKill, Some(server)) => {
                redis::kill(server, label, log).await;
                Undo::StartRedisAgain
            }
            (FaultAction::RedisStop, Some(server)) => {
                redis::stop(server, label, log).await;
                Undo::StartRedisAgain
            }
            (FaultAction::RedisPassword, Some(server)) => {
                let original = stack.password.clone().unwrap_or_default();
                redis::change_password(server, original, label, log)
                    .await
                    .map_or(Undo::Nothing, Undo::RestorePassword)
            }
            (FaultAction::Proxy(proxy), _) => proxy
                .apply(stack, label, log)
                .map_or(Undo::Nothing, |id| Undo::RemoveProxyFault(proxy.target, id)),
            (FaultAction::WorkerKill(_), _) => {
                log.fault(format!("fault start: {label}"));
                Undo::Nothing
            }
            // Played above, on the topology.
            (FaultAction::RedisPrimaryKill, _) | (_, None) => Undo::Nothing,
        }
    }
}

async fn revert(undo: Undo, label: &str, stack: &SharedStack, log: &impl FaultLog) {
    let mut stack = stack.lock().await;
    let stack = &mut *stack;
    if let (Undo::StartNodeAgain(port), Some(topology)) = (&undo, stack.topology.as_mut()) {
        redis::start_node_again(topology, *port, label, log).await;
        return;
    }
    match (undo, stack.redis.as_mut()) {
        (Undo::StartRedisAgain, Some(server)) => redis::start_again(server, label, log).await,
        (Undo::RestorePassword(original), Some(server)) => {
            redis::restore_password(server, &original, label, log).await;
        }
        (Undo::RemoveProxyFault(target, id), _) => network::revert(target, id, stack, label, log),
        _ => log.fault(format!("fault end: {label}")),
    }
}

/// The `kind` tag serde writes for `value`: one spelling of every kind
/// name, the one the files and the control API use.
fn serde_kind<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value)
        .ok()?
        .get("kind")?
        .as_str()
        .map(str::to_owned)
}
