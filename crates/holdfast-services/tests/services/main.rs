//! The roles of holdfast-services over HTTP, started in-process on free
//! ports, each test against a private redis-server (and, for the api, a
//! database of its own): one test binary, a module per role and feature.
//!
//! - [`api`]: users, products, orders and the store demo, read through the
//!   cache, on every database engine;
//! - [`api_faults`]: the api when Redis, the database or the users side
//!   fails, with several instances, and its start-up (the warm-up);
//! - [`auth`]: API keys and JWT on the public listeners;
//! - [`ingress`]: the ingress and worker roles, request/reply and jobs;
//! - [`exporter`]: the Prometheus endpoint of topic figures, Redis
//!   essentials and flushed aggregates.
//!
//! The roles come from `holdfast_testkit::roles`. The metrics recorder is
//! one per process, so every test of this binary shares it: tests that
//! assert exact figures own the series they count (see `api::store_demo`),
//! the others compare with what was there before or look for names only.
//! The trace test lives in a binary of its own (`tests/tracing`), as it
//! installs the process-wide tracing subscriber.

mod api;
mod api_faults;
mod auth;
mod exporter;
mod ingress;
mod isolation;
mod limits;
mod openapi;
mod overload;
mod rate_limits;

/// Held by the tests that load both cores on purpose (the 1 ms clients,
/// the connection flood, the overload runs), so that they do not run side
/// by side and measure each other instead of the code.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
