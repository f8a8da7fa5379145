//! Wire types of the holdfast streams protocol, and nothing that does I/O.
//!
//! Everything a caller and a worker must agree on lives here: the request
//! [`Envelope`] and the [`Reply`] as lists of stream fields, request ids,
//! absolute [`Deadline`]s, validated [`Topic`] names and the Redis key layout
//! ([`Keys`]). The contract these types implement is written down in
//! `docs/protocol.md`; a change here is a change of that contract.
#![warn(missing_docs)]

pub mod calendar;
mod deadline;
pub mod durability;
pub mod duration;
mod envelope;
mod ids;
mod keys;
pub mod metric_names;
pub mod problem;
mod redact;

pub use calendar::civil_date;
pub use deadline::Deadline;
pub use durability::{Durability, DurabilityError};
pub use duration::{format_duration, parse_duration};
pub use envelope::{Envelope, EnvelopeError, Kind, PROTOCOL_VERSION, Reply, ReplyStatus, fields};
pub use ids::{RequestId, RequestIdError};
pub use keys::{Keys, Topic, TopicError};
pub use problem::{PROBLEM_JSON, Problem};
pub use redact::redact_url;
