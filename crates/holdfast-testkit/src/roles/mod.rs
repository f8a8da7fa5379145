//! The roles of `holdfast-services` started in-process for tests, the way
//! their binaries start them: `build` on loopback port 0, then
//! `run_until_stopped` on a task of its own.
//!
//! Each test gets a private redis-server and its own key prefix (or cache
//! prefix), and Redis settings that notice an outage and reconnect within
//! 200 ms ([`quick_redis_config`](crate::quick_redis_config)). A started
//! role is stopped when the handle the test holds is dropped.
//!
//! - [`api`]: users, products, orders and the store demo, on a fresh
//!   database of any engine;
//! - [`ingress`]: the HTTP front door of the weather demo, with workers
//!   started on demand;
//! - [`exporter`]: the Prometheus endpoint of aggregated metrics and topic
//!   figures;
//! - [`worker`]: the worker role both of the latter start.

pub mod api;
pub mod exporter;
pub mod ingress;
pub mod worker;

use std::net::{Ipv4Addr, SocketAddr};

/// Any free port on 127.0.0.1, for a role's listener.
fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// The base URL of a listener on 127.0.0.1 at `port`.
fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
