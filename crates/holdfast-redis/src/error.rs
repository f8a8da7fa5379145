//! The one error type of Redis calls, and whether a retry can help.

use std::time::Duration;

/// Why a Redis call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    /// Redis is switched off by configuration (`REDIS_ENABLED=false`).
    #[error("redis is disabled by configuration")]
    Disabled,
    /// There is no connection right now; the supervisor is reconnecting.
    #[error("redis is unavailable ({reason})")]
    Unavailable {
        /// What the supervisor last saw.
        reason: String,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The circuit breaker is open after repeated failures.
    #[error("redis circuit breaker is open")]
    CircuitOpen {
        /// Time until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The command did not complete before its deadline.
    #[error("redis command timed out after {0:?}")]
    Timeout(Duration),
    /// The caller's own deadline ran out before Redis answered. It says
    /// nothing about Redis: no breaker or retry budget counts it.
    #[error("the caller's deadline ran out before Redis answered")]
    CallerDeadline,
    /// The connection failed while the command ran.
    #[error("redis connection failed: {0}")]
    Connection(#[source] redis::RedisError),
    /// The server answered with an error (wrong type, no such group, ...).
    #[error("redis server error: {0}")]
    Server(#[source] redis::RedisError),
    /// The settings cannot work (a malformed URL, an unreadable CA file):
    /// said at start, never retried.
    #[error("invalid Redis settings: {0}")]
    Config(String),
}

impl RedisError {
    /// Sorts a redis-rs error into a connection failure or a server answer.
    pub fn from_redis(err: redis::RedisError) -> Self {
        if is_connection_error(&err) {
            RedisError::Connection(err)
        } else {
            RedisError::Server(err)
        }
    }

    /// Whether the same call may succeed later: true for outages, timeouts and
    /// transient server states (loading, failover), false for wrong commands.
    pub fn is_retryable(&self) -> bool {
        match self {
            RedisError::Disabled | RedisError::Config(_) | RedisError::CallerDeadline => false,
            RedisError::Unavailable { .. }
            | RedisError::CircuitOpen { .. }
            | RedisError::Timeout(_)
            | RedisError::Connection(_) => true,
            RedisError::Server(_) if self.is_permission_denied() => false,
            RedisError::Server(err) => matches!(
                err.code(),
                Some(
                    "LOADING"
                        | "TRYAGAIN"
                        | "MASTERDOWN"
                        | "READONLY"
                        | "BUSY"
                        | "NOSCRIPT"
                        | "CLUSTERDOWN"
                        | "MOVED"
                        | "ASK"
                )
            ),
        }
    }

    /// A hint for `Retry-After`, when the failure is an outage.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RedisError::Unavailable { retry_after, .. }
            | RedisError::CircuitOpen { retry_after } => Some(*retry_after),
            RedisError::Timeout(_) | RedisError::Connection(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// Whether this is the server saying a consumer group or stream is gone
    /// (`NOGROUP`), as after a restart that lost the data.
    pub fn is_no_group(&self) -> bool {
        match self {
            RedisError::Server(err) => {
                err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP")
            }
            _ => false,
        }
    }

    /// Whether the server did not know a script (after `SCRIPT FLUSH` or a
    /// restart): load it and try again.
    pub fn is_no_script(&self) -> bool {
        matches!(self, RedisError::Server(err) if err.code() == Some("NOSCRIPT"))
    }

    /// Whether Redis refused the command for this user (an ACL without the
    /// command: `NOPERM`, or a script calling one): retrying cannot help,
    /// the user's rules must change.
    pub fn is_permission_denied(&self) -> bool {
        match self {
            RedisError::Server(err) => {
                let text = err.to_string();
                err.code() == Some("NOPERM")
                    || text.contains("NOPERM")
                    || text.contains("can't run this command")
                    || text.contains("no permissions to")
            }
            _ => false,
        }
    }

    /// A stable code for metrics and problem details.
    pub fn code(&self) -> &'static str {
        match self {
            RedisError::Disabled => "redis_disabled",
            RedisError::Unavailable { .. } => "redis_unavailable",
            RedisError::CircuitOpen { .. } => "redis_circuit_open",
            RedisError::Timeout(_) => "redis_timeout",
            RedisError::CallerDeadline => "deadline_exceeded",
            RedisError::Connection(_) => "redis_connection",
            RedisError::Server(_) => "redis_server_error",
            RedisError::Config(_) => "redis_config",
        }
    }
}

/// Whether a redis-rs error means the connection, not the command, failed.
pub(crate) fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}
