//! Connecting to Redis so that an outage costs microseconds, not timeouts.
//!
//! [`Redis`] is a cheap, cloneable handle. Behind it a supervisor task owns
//! the one shared multiplexed connection: it connects with capped, fully
//! jittered backoff, pings while ready so a dead server is noticed within a
//! second even without traffic, records every state change in a bounded
//! history, and declares itself `stuck` (and starts over with a fresh
//! client) when reconnecting makes no progress for too long.
//!
//! Every command runs under a deadline. While there is no connection, or
//! while the circuit breaker is open, a command fails at once with a typed
//! [`RedisError`] that says when to retry. Blocking reads (`XREAD BLOCK`)
//! must not share the multiplexed connection, so [`Redis::dedicated`] hands
//! out a connection of their own with a response timeout longer than the
//! block.

#![warn(missing_docs)]

mod cluster;
mod connect;
mod error;
pub mod local;
pub mod local_topology;
mod supervisor;

pub use cluster::Connection;
pub use connect::{TlsOptions, redact};
pub use error::RedisError;
pub use supervisor::{ConnState, Redis, RedisConfig, RedisHealth, Transition};

/// The redis-rs crate, re-exported so users build commands with the same version.
pub use redis;
