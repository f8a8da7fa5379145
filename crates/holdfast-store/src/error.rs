//! The one error type of the store, and whether a retry can help.
//!
//! Every sqlx error is sorted here, once, into a handful of kinds a caller
//! can act on: the database is out of reach or busy (`Unavailable`,
//! `Timeout`: retry, serve stale, answer 503), or the request itself is wrong
//! (`NotFound`, `Conflict`, `Invalid`: answer 4xx, never retry), or something
//! is broken that a retry will not fix (`Internal`). Drivers report the same
//! situation with different codes, so the sorting looks at the backend.

use std::time::Duration;

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sqlx::mysql::MySqlDatabaseError;

use crate::Backend;
use crate::model::Entity;

/// Why a store call failed.
///
/// The error is `Clone` so that a cache that shares one load among many
/// waiters can hand each of them the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached or refused to work right now: no
    /// connection within the acquire timeout, a refused or broken
    /// connection, a server shutting down, a deadlock victim. Retryable.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// What happened, for logs (never shown to clients).
        reason: String,
    },
    /// A statement or a whole store call ran past its time limit. Retryable.
    #[error("database timed out: {reason}")]
    Timeout {
        /// What timed out, for logs.
        reason: String,
    },
    /// A row the call needs does not exist (for example the product of a
    /// new order). Not retryable.
    #[error("{entity} {id} not found")]
    NotFound {
        /// The kind of row that is missing.
        entity: Entity,
        /// Its id.
        id: i64,
    },
    /// The call contradicts data already stored: a duplicate email, a user
    /// who still has orders. Not retryable.
    #[error("conflict: {reason}")]
    Conflict {
        /// What conflicts, safe to show to a client.
        reason: String,
    },
    /// The input or the configuration is not acceptable: a malformed email,
    /// a value out of range, an unknown URL scheme. Not retryable.
    #[error("invalid: {reason}")]
    Invalid {
        /// What is wrong, safe to show to a client.
        reason: String,
    },
    /// Anything else: a schema that does not match the code, a failed
    /// migration, a row that does not decode. Not retryable; look at logs.
    #[error("database error: {reason}")]
    Internal {
        /// What happened, for logs.
        reason: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later, unchanged: true for outages
    /// and timeouts, false for bad input, conflicts and internal errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        )
    }

    /// A stable code for metrics, logs and problem details.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable { .. } => "db_unavailable",
            StoreError::Timeout { .. } => "db_timeout",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Invalid { .. } => "invalid",
            StoreError::Internal { .. } => "db_error",
        }
    }

    /// A hint for `Retry-After` when the failure is an outage.
    pub fn retry_after(&self) -> Option<Duration> {
        self.is_retryable().then_some(Duration::from_secs(1))
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        StoreError::Unavailable {
            reason: reason.into(),
        }
    }

    pub(crate) fn timeout(reason: impl Into<String>) -> Self {
        StoreError::Timeout {
            reason: reason.into(),
        }
    }

    pub(crate) fn conflict(reason: impl Into<String>) -> Self {
        StoreError::Conflict {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        StoreError::Internal {
            reason: reason.into(),
        }
    }

    /// Sorts a sqlx error from `backend` into a kind; `operation` names the
    /// store call for the message.
    pub(crate) fn from_sqlx(backend: Backend, operation: &str, err: sqlx::Error) -> Self {
        let reason = format!("{operation}: {err}");
        match err {
            sqlx::Error::Database(db) => classify_database(backend, &*db, reason),
            // sqlx retries refused connects inside the acquire timeout and
            // then reports PoolTimedOut, so an unreachable server and an
            // exhausted pool both end here: the database cannot take work.
            sqlx::Error::PoolTimedOut => StoreError::unavailable(format!(
                "{operation}: no database connection within the acquire timeout"
            )),
            // A protocol error almost always means a connection that broke
            // mid-answer (or a proxy in between); a new connection helps.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::unavailable(reason),
            sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) => {
                StoreError::invalid(reason)
            }
            sqlx::Error::Migrate(migrate) => match *migrate {
                MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                    StoreError::from_sqlx(backend, operation, inner)
                }
                other => StoreError::internal(format!("{operation}: {other}")),
            },
            _ => StoreError::internal(reason),
        }
    }
}

/// Sorts an error the server returned. Constraint kinds are portable; the
/// rest is read from each engine's own codes.
fn classify_database(backend: Backend, db: &dyn DatabaseError, reason: String) -> StoreError {
    match db.kind() {
        ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => {
            return StoreError::conflict(reason);
        }
        ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
            return StoreError::invalid(reason);
        }
        _ => {}
    }
    let kind = match backend {
        Backend::Postgres => postgres_kind(db.code().as_deref().unwrap_or("")),
        Backend::MySql => {
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number);
            mysql_kind(number, db.code().as_deref().unwrap_or(""))
        }
        Backend::Sqlite => sqlite_kind(
            db.code()
                .and_then(|code| code.parse::<i32>().ok())
                .unwrap_or(0),
        ),
    };
    match kind {
        Kind::Unavailable => StoreError::unavailable(reason),
        Kind::Timeout => StoreError::timeout(reason),
        Kind::Invalid => StoreError::invalid(reason),
        Kind::Internal => StoreError::internal(reason),
    }
}

enum Kind {
    Unavailable,
    Timeout,
    Invalid,
    Internal,
}

/// PostgreSQL SQLSTATEs (Appendix A of its manual).
fn postgres_kind(sqlstate: &str) -> Kind {
    match sqlstate {
        // query_canceled: what statement_timeout raises; lock_not_available;
        // idle_in_transaction_session_timeout.
        "57014" | "55P03" | "25P03" => Kind::Timeout,
        // admin_shutdown, crash_shutdown, cannot_connect_now,
        // serialization_failure, deadlock_detected, database doesn't exist.
        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "3D000" => Kind::Unavailable,
        // Connection exceptions, insufficient resources (too many
        // connections, disk full), authorization failures: the operator or
        // time fixes them, and the pool reconnects by itself.
        code if code.starts_with("08") || code.starts_with("53") || code.starts_with("28") => {
            Kind::Unavailable
        }
        // Data exceptions: value too long, numeric overflow, bad text.
        code if code.starts_with("22") => Kind::Invalid,
        _ => Kind::Internal,
    }
}

/// MySQL and MariaDB server error numbers, with the SQLSTATE as fallback.
fn mysql_kind(number: Option<u16>, sqlstate: &str) -> Kind {
    match number {
        // Lock wait timeout; MariaDB max_statement_time; MySQL
        // max_execution_time.
        Some(1205 | 1969 | 3024) => Kind::Timeout,
        // Too many connections, server shutdown, access denied, unknown
        // database, deadlock victim, query or connection killed.
        Some(1040 | 1203 | 1053 | 1044 | 1045 | 1049 | 1213 | 1317 | 1927) => Kind::Unavailable,
        // Data too long, out of range, incorrect value, NULL into NOT NULL.
        Some(1406 | 1264 | 1690 | 1366 | 1048) => Kind::Invalid,
        _ if sqlstate.starts_with("08") || sqlstate.starts_with("40") => Kind::Unavailable,
        _ if sqlstate.starts_with("22") => Kind::Invalid,
        _ => Kind::Internal,
    }
}

/// SQLite result codes; the low byte of an extended code is its primary code.
fn sqlite_kind(code: i32) -> Kind {
    match code & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED: another writer held the lock for the
        // whole busy timeout.
        5 | 6 => Kind::Timeout,
        // SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL,
        // SQLITE_CANTOPEN: the file or the machine is the problem.
        7 | 8 | 10 | 13 | 14 => Kind::Unavailable,
        // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE.
        18 | 20 | 25 => Kind::Invalid,
        _ => Kind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_timeouts_are_retryable_and_input_errors_are_not() {
        assert!(StoreError::unavailable("down").is_retryable());
        assert!(StoreError::timeout("slow").is_retryable());
        assert!(!StoreError::conflict("dup").is_retryable());
        assert!(!StoreError::invalid("bad").is_retryable());
        assert!(!StoreError::internal("oops").is_retryable());
        let missing = StoreError::NotFound {
            entity: Entity::Product,
            id: 7,
        };
        assert!(!missing.is_retryable());
        assert_eq!(missing.to_string(), "product 7 not found");
        assert_eq!(missing.code(), "not_found");
    }

    #[test]
    fn a_pool_timeout_means_the_database_is_unavailable() {
        let err = StoreError::from_sqlx(Backend::Postgres, "ping", sqlx::Error::PoolTimedOut);
        assert_eq!(err.code(), "db_unavailable");
    }

    #[test]
    fn engine_codes_for_statement_timeouts_are_timeouts() {
        assert!(matches!(postgres_kind("57014"), Kind::Timeout));
        assert!(matches!(mysql_kind(Some(1969), "70100"), Kind::Timeout));
        assert!(matches!(sqlite_kind(5), Kind::Timeout));
        assert!(matches!(sqlite_kind(517), Kind::Timeout));
        assert!(matches!(postgres_kind("08006"), Kind::Unavailable));
        assert!(matches!(postgres_kind("22001"), Kind::Invalid));
    }
}
