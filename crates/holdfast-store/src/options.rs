//! Which database to open and with what limits.
//!
//! A [`DatabaseUrl`] is parsed once, knows its [`Backend`] and never prints
//! its password. [`StoreOptions`] holds every limit of the connection pool,
//! so that a database that is down or stuck costs a bounded, known time.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite, a file (or memory) in this process.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    #[serde(rename = "mysql")]
    MySql,
}

impl Backend {
    /// `sqlite`, `postgres` or `mysql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }
}

crate::model::display_as_str!(Backend);

/// A database URL whose scheme names a supported engine.
///
/// Accepted: `sqlite://path?mode=rwc`, `sqlite::memory:`,
/// `postgres://…` or `postgresql://…`, `mysql://…` or `mariadb://…`.
/// `Display` and `Debug` hide the password, so the value can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// Parses a URL, checking only its scheme; the driver reads the rest
    /// when the store opens.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let scheme = url.split(':').next().unwrap_or_default();
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            "mysql" | "mariadb" => Backend::MySql,
            _ => {
                return Err(StoreError::invalid(format!(
                    "unsupported database URL scheme {scheme:?}: use sqlite://, postgres:// or mysql://"
                )));
            }
        };
        Ok(DatabaseUrl {
            url: url.to_owned(),
            backend,
        })
    }

    /// The URL of an SQLite file, created if missing (`mode=rwc`): what
    /// `holdfast up` uses under its data directory.
    pub fn sqlite_file(path: &Path) -> Self {
        // Percent-encode the characters that would end the path part early
        // or be read as an escape.
        let path = path
            .to_string_lossy()
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        DatabaseUrl {
            url: format!("sqlite://{path}?mode=rwc"),
            backend: Backend::Sqlite,
        }
    }

    /// The engine this URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The full URL, password included: pass it to a driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        holdfast_core::redact_url(&self.url)
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Limits of the connection pool and of every store call.
///
/// The defaults suit a service in front of a cache: a database that is
/// down answers `Unavailable` within about two seconds, a stuck statement is
/// cancelled by the server after five, and no store call outlives eight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections open at once. Bounds the load this process can put
    /// on the database; callers beyond it wait up to `acquire_timeout`.
    pub max_connections: u32,
    /// Connections kept open while idle, so the first requests after a quiet
    /// spell do not pay for a connect.
    pub min_connections: u32,
    /// Longest wait for a connection, opening a new one included (sqlx
    /// connects inside the acquire, so this is also the connect timeout).
    pub acquire_timeout: Duration,
    /// Longest a statement may run on the server: `statement_timeout` on
    /// PostgreSQL, `max_statement_time` on MariaDB (`max_execution_time`,
    /// SELECTs only, on MySQL), and the busy timeout on SQLite.
    pub statement_timeout: Duration,
    /// Longest one store call may take on the client, acquire included; the
    /// guard for what the server cannot cancel (a network that drops
    /// packets, an SQLite statement that runs long).
    pub operation_timeout: Duration,
    /// Longest migrations or seeding may take.
    pub maintenance_timeout: Duration,
    /// Idle connections beyond `min_connections` close after this long.
    pub idle_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(8),
            maintenance_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        let cases = [
            ("sqlite://data/holdfast.db?mode=rwc", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
            ("postgres://u@h/db", Backend::Postgres),
            ("postgresql://u@h/db", Backend::Postgres),
            ("mysql://root@127.0.0.1:3306/test", Backend::MySql),
            ("mariadb://root@127.0.0.1:3306/test", Backend::MySql),
        ];
        for (url, backend) in cases {
            assert_eq!(DatabaseUrl::parse(url).unwrap().backend(), backend, "{url}");
        }
        assert!(DatabaseUrl::parse("redis://localhost").is_err());
        assert!(DatabaseUrl::parse("").is_err());
    }

    #[test]
    fn a_password_never_shows_in_display_or_debug() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cr%40t@db:5432/app?sslmode=require").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cr"));
        let plain = DatabaseUrl::parse("mysql://root@127.0.0.1/test").unwrap();
        assert_eq!(plain.to_string(), "mysql://root@127.0.0.1/test");
    }

    #[test]
    fn an_sqlite_file_url_escapes_characters_that_end_a_path() {
        let url = DatabaseUrl::sqlite_file(Path::new("/tmp/a?b#c/holdfast.db"));
        assert_eq!(url.expose(), "sqlite:///tmp/a%3Fb%23c/holdfast.db?mode=rwc");
    }
}
