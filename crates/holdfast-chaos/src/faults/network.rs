//! The `proxy` kind: a network fault played by one of the stack's fault
//! proxies, and the network faults themselves.
//!
//! A [`Fault`] is what the proxy's control API takes as JSON
//! (`{"kind": "latency", "ms": 200}`) and what a scenario's `proxy` step
//! carries in its `fault` field (`fault = { kind = "latency", ms = 200 }`):
//! one form for both. Applying one adds it to the proxy named by the step's
//! [`ProxyTarget`]; reverting removes it. How the proxy's pumps carry each
//! fault out, and how several compose, is in [`crate::proxy`].

use serde::{Deserialize, Serialize};

use super::FaultLog;
use crate::proxy::{FaultId, Proxy};
use crate::scenario::StackSpec;
use crate::stack::Stack;

/// Which way of a connection a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// Client to server.
    Upstream,
    /// Server to client.
    Downstream,
}

impl Direction {
    /// Whether a fault with this direction applies to bytes flowing `flow`
    /// (`flow` is [`Direction::Upstream`] or [`Direction::Downstream`]).
    pub fn applies_to(self, flow: Direction) -> bool {
        self == Direction::Both || self == flow
    }
}

/// A network fault the proxy injects. See [`crate::proxy`] for how several
/// faults compose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Each chunk is delayed by `ms` ± `jitter_ms` (uniform, never below
    /// zero), order kept.
    Latency {
        /// Mean delay, milliseconds.
        ms: u64,
        /// Half-width of the uniform jitter, milliseconds.
        #[serde(default)]
        jitter_ms: u64,
        /// Which way is delayed.
        #[serde(default)]
        direction: Direction,
    },
    /// At most this many bytes per second (per connection and direction).
    /// Zero is treated as one.
    Bandwidth {
        /// Rate limit.
        bytes_per_sec: u64,
        /// Which way is limited.
        #[serde(default)]
        direction: Direction,
    },
    /// Accept and hold: connections stay open and nothing is forwarded
    /// until the fault is removed. Data is **held unread** (in the kernel
    /// buffers, so the sender eventually blocks), not dropped: when the
    /// fault is removed, held connections resume and what was sent during
    /// the blackhole is delivered, late but intact. New connections are
    /// accepted, dialled upstream and held too.
    Blackhole {
        /// Which way is held.
        #[serde(default)]
        direction: Direction,
    },
    /// Live connections are closed with a TCP RST (`SO_LINGER` 0) on the
    /// client side (the upstream side is closed normally), and new
    /// connections are reset right after accept, until removed.
    ResetPeer,
    /// Each connection is closed after forwarding this many bytes in the
    /// direction (for [`Direction::Both`], the sum of both ways). Bytes are
    /// counted per connection **from the moment the connection sees the
    /// fault**: from its start for connections opened after the fault was
    /// added, from when it was added for live ones.
    CloseAfter {
        /// Budget of bytes forwarded before the close.
        bytes: u64,
        /// Which way is counted.
        #[serde(default)]
        direction: Direction,
    },
    /// Writes are split into chunks of at most `max_bytes` (zero is treated
    /// as one) with `delay_us` between them. Tokio's timer rounds a non-zero
    /// delay up to about a millisecond.
    Slice {
        /// Largest write.
        max_bytes: usize,
        /// Pause between two writes, microseconds.
        #[serde(default)]
        delay_us: u64,
        /// Which way is sliced.
        #[serde(default)]
        direction: Direction,
    },
    /// The listener stops accepting: the listening socket is closed, so new
    /// connections are refused (`ECONNREFUSED`), and live connections are
    /// closed. When the fault is removed the same address is bound again.
    Down,
}

impl Fault {
    /// Checks the values a caller may get wrong (a zero rate or slice
    /// size). [`Proxy::add`] accepts such faults anyway and clamps them; the
    /// control API rejects them with this message.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Bandwidth {
                bytes_per_sec: 0, ..
            } => Err("bandwidth needs bytes_per_sec of at least 1".to_owned()),
            Fault::Slice { max_bytes: 0, .. } => {
                Err("slice needs max_bytes of at least 1".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Its kind as the control API writes it (`latency`, `reset_peer`, ...).
    pub fn kind(&self) -> String {
        super::serde_kind(self).unwrap_or_else(|| "fault".into())
    }
}

/// Which proxy a `proxy` step goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyTarget {
    /// Between the roles and Redis (`stack.redis_proxy = true`).
    Redis,
    /// Between the api and its database (`stack.database_proxy = true`).
    Database,
}

impl ProxyTarget {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyTarget::Redis => "redis",
            ProxyTarget::Database => "database",
        }
    }

    /// The stack's proxy at this place, if the stack has one.
    pub fn proxy(self, stack: &Stack) -> Option<&Proxy> {
        match self {
            ProxyTarget::Redis => stack.redis_proxy.as_ref(),
            ProxyTarget::Database => stack.database_proxy.as_ref(),
        }
    }

    /// Whether a stack started from `spec` has a proxy here.
    fn is_wired(self, spec: &StackSpec) -> bool {
        match self {
            ProxyTarget::Redis => spec.redis_proxy,
            ProxyTarget::Database => spec.database_proxy,
        }
    }
}

/// The `proxy` kind as a scenario writes it:
/// `kind = "proxy"`, `target = "redis"`, `fault = { kind = "blackhole" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyFault {
    /// Which proxy.
    pub target: ProxyTarget,
    /// The fault, as the proxy's control API takes it.
    pub fault: Fault,
}

impl ProxyFault {
    pub(super) fn default_label(&self) -> String {
        format!("{} {}", self.target.as_str(), self.fault.kind())
    }

    pub(super) fn check_stack(&self, label: &str, spec: &StackSpec) -> Result<(), String> {
        if self.target.is_wired(spec) {
            Ok(())
        } else {
            Err(format!(
                "fault {label:?} needs stack.{}_proxy = true",
                self.target.as_str()
            ))
        }
    }

    /// Adds the fault to its proxy; the id to remove it by, or `None` when
    /// the stack has no such proxy.
    pub(super) fn apply(&self, stack: &Stack, label: &str, log: &impl FaultLog) -> Option<FaultId> {
        match self.target.proxy(stack) {
            Some(proxy) => {
                let id = proxy.add(self.fault.clone());
                log.fault(format!("fault start: {label}"));
                Some(id)
            }
            None => {
                log.fault(format!("no proxy for {label}"));
                None
            }
        }
    }
}

/// Removes the fault `id` from the proxy at `target`.
pub(super) fn revert(
    target: ProxyTarget,
    id: FaultId,
    stack: &Stack,
    label: &str,
    log: &impl FaultLog,
) {
    if let Some(proxy) = target.proxy(stack) {
        proxy.remove(id);
    }
    log.fault(format!("fault end: {label}"));
}
