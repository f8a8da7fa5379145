//! A read-through cache that is never slower or less available than the
//! database alone.
//!
//! [`ReadThrough`] sits in front of a loader (a database read) for one
//! entity. Its parts, each there for a failure it hides:
//!
//! - **L2 in Redis**, shared by all instances, with a TTL plus jitter so
//!   keys written together do not expire (and reload) together;
//! - **L1 in process** (optional, short), invalidated across instances by
//!   a Redis pub/sub broadcast ([`ReadThrough::start`]);
//! - **single flight**: concurrent reads of one cold key make one loader
//!   call, so an expiry does not become a stampede on the database;
//! - **fail-safe**: when the loader fails, or is slower than its soft
//!   timeout, a stale copy up to `max_stale` old is served and the load
//!   finishes in the background;
//! - **negative caching** of "not found";
//! - **bypass**: every cache command has a short deadline and the Redis
//!   handle fails in microseconds while Redis is down, so during an outage
//!   a read costs the loader and nothing more.
//!
//! Every answer says where it came from ([`Cached::source`],
//! [`Cached::x_cache`]), and [`ReadThrough::stats`] / [`ReadThrough::state`]
//! feed `/health`.
//!
//! What a client can see: a value at most `ttl (+ jitter)` old from the
//! cache; after a write on any instance, the old value from another
//! instance's L1 for at most the L1 TTL if that instance missed the
//! broadcast (its subscriber was reconnecting), otherwise not at all; and
//! while the database fails, a value at most `ttl + max_stale` old.

#![warn(missing_docs)]

mod config;
mod error;
mod invalidation;
mod meters;
pub mod metric_names;
pub mod pending;
mod read_through;
mod stats;

pub use config::{CacheConfig, L1Config};
pub use error::{CacheError, LoadError};
pub use read_through::{Cached, ReadThrough, Source};
pub use stats::{CacheState, CacheStats};
