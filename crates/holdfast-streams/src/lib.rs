//! Request/reply and jobs over Redis Streams.
//!
//! A [`Caller`] puts requests on a topic's request stream and waits for
//! replies on its own reply stream; a [`Worker`] reads a topic with a
//! consumer group, runs a [`Handler`], and answers. Nothing accepted is lost
//! when a worker dies: unacknowledged entries are claimed by live workers
//! after the claim timeout, entries that fail `max_deliveries` times move to
//! a dead-letter stream and their callers hear `dead`, and no caller waits
//! past its deadline. The wire contract is `docs/protocol.md`.
//!
//! The parts:
//! - [`caller`]: enqueue (idempotent by request id), reply reader, waiters,
//!   job records, backlog limits;
//! - [`worker`]: readers per partition, a bounded set of terminals running
//!   the handler, a batching finisher that pipelines replies and acks, and a
//!   maintenance loop that refreshes claims, reclaims, dead-letters and trims;
//! - [`admin`]: topic statistics and dead-letter list, replay and purge.

#![warn(missing_docs)]

pub mod admin;
mod admission;
pub mod caller;
mod meters;
mod scripts;
pub mod trace_context;
pub mod value;
pub mod worker;

pub use admin::{Admin, ConsumerStats, DeadLetter, DeadLetterEntry, PartitionStats, TopicStats};
pub use admission::Refusal;
pub use caller::{
    CallError, CallOptions, Caller, CallerConfig, FsyncSupport, JobRecord, fsync_support,
};
pub use worker::{Handler, HandlerError, Request, Worker, WorkerConfig, WorkerStatus, handler_fn};
