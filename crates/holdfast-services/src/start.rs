//! What can keep a role from starting.
//!
//! Every role's `build` (ingress, api, worker, exporter) binds its
//! listeners and checks its settings before it serves anything, and fails
//! with a [`StartError`] that names what was being started; the binary adds
//! which role it was and exits.

use std::net::SocketAddr;

use holdfast_redis::RedisError;
use holdfast_store::StoreError;
use tokio::net::TcpListener;

/// Why a role could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound (address in use, no permission), or
    /// its bound address could not be read back.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The Redis settings are unusable (a malformed URL); an unreachable
    /// Redis is not an error at start, the role starts degraded.
    #[error("invalid Redis settings")]
    Redis(#[from] RedisError),
    /// The database could not be opened, migrated or seeded.
    #[error("{action} the database {url}")]
    Database {
        /// `opening`, `migrating` or `seeding`.
        action: &'static str,
        /// The database URL, password hidden.
        url: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// The HTTP client of the api's order service could not be built.
    #[error("could not build the users client")]
    UsersClient(#[source] reqwest::Error),
    /// The durability configured cannot be had from this Redis.
    #[error("{0}")]
    Durability(String),
    /// An HTTP client of the dashboard could not be built.
    #[error("could not build the dashboard's HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// Binds `addr` (port 0 picks a free one).
///
/// # Errors
/// [`StartError::Bind`] naming `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}
