//! The holdfast roles as libraries, so tests and `holdfast up` start the
//! real thing in-process on port 0.
//!
//! - [`api`]: users and products from the SQL store, read through the
//!   cache, with `source` and `X-Cache` on every cached read;
//! - [`ingress`]: the HTTP front door that turns requests into stream calls
//!   and jobs;
//! - [`worker`]: a stream worker role with the weather demo's handler and an
//!   admin listener;
//! - [`dashboard`]: the web overview of every registered instance (first
//!   part of the dashboard);
//! - [`exporter`]: one Prometheus endpoint for what lives in Redis: the
//!   metric aggregates every role flushes, Redis essentials and topics;
//! - [`http`], [`problem`], [`health`], [`rate_limit`], [`auth`]: what
//!   every listener shares: one middleware stack (with rate limits and
//!   optional API keys or JWT), `application/problem+json` errors (and their
//!   OpenAPI responses), health endpoints and `/metrics`;
//! - [`start`]: why a role could not start; `role`: the listeners and
//!   background tasks that every role serving HTTP is built on;
//! - [`registry`]: every role process announces itself in Redis (role,
//!   instance, admin URL), so the dashboard can find it;
//! - [`weather`]: the weather demo's domain (request validation and a
//!   deterministic fake forecast).

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod exporter;
pub mod health;
pub mod http;
pub mod ingress;
pub mod problem;
pub mod rate_limit;
pub mod registry;
mod role;
pub mod start;
pub mod warm_up;
pub mod weather;
pub mod worker;
