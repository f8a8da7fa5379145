//! Fault injection for holdfast and any service on Redis: a TCP fault proxy
//! with an HTTP control API ([`proxy`], [`control`]), scenarios that start a
//! stack ([`scenario`], [`stack`]), play a timeline of faults ([`faults`])
//! under load and check invariants ([`runner`], [`invariants`]), and the
//! reports of their runs ([`report`], [`report_page`]). `holdfast up` runs
//! the same stack under a [`supervisor`], with faults played live through
//! its [`stack_control`] API.

pub mod control;
mod durations;
pub mod faults;
pub mod invariants;
pub mod proxy;
pub mod report;
pub mod report_page;
pub mod runner;
pub mod scenario;
pub mod stack;
pub mod stack_control;
pub mod supervisor;
