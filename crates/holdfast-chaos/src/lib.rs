//! Fault injection for holdfast and any service on Redis: a TCP fault proxy
//! with an HTTP control API ([`proxy`], [`control`]), scenarios that start a
//! stack, play a timeline of faults under load and check invariants, and
//! the reports of their runs ([`report`], [`html`]).

pub mod control;
pub mod html;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stack;
