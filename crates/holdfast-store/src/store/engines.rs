//! Each engine's pool: the limits every engine shares, and the settings
//! only one engine has (SQLite's WAL and busy timeout, PostgreSQL's
//! server-side timeouts, MariaDB's or MySQL's statement limit), so that a
//! database that is down or stuck costs a bounded time on any of them.

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Database};

use crate::StoreError;
use crate::options::{DatabaseUrl, StoreOptions};

/// Pool limits shared by every engine.
fn pool_options<DB: Database>(options: &StoreOptions) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .min_connections(options.min_connections.min(options.max_connections))
        .acquire_timeout(options.acquire_timeout)
        .idle_timeout(Some(options.idle_timeout))
}

fn bad_url(err: sqlx::Error) -> StoreError {
    StoreError::invalid(format!("database URL: {err}"))
}

pub(super) async fn sqlite_pool(
    url: &DatabaseUrl,
    options: &StoreOptions,
) -> Result<SqlitePool, StoreError> {
    let text = url.expose();
    let in_memory = text.contains(":memory:") || text.contains("mode=memory");
    let mut connect = SqliteConnectOptions::from_str(text)
        .map_err(bad_url)?
        // The busy timeout is SQLite's only wait: how long a writer waits
        // for another writer's lock before SQLITE_BUSY.
        .busy_timeout(options.statement_timeout)
        .foreign_keys(true);
    let mut pool = pool_options(options);
    if in_memory {
        // An in-memory database lives as long as one connection to it: keep
        // one open for good.
        pool = pool
            .min_connections(options.min_connections.max(1))
            .idle_timeout(None)
            .max_lifetime(None);
    } else {
        // WAL lets readers run while one writer writes; NORMAL is durable
        // across process crashes, the usual pairing with WAL.
        connect = connect
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        if let Some(dir) = connect.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir).await.map_err(|err| {
                StoreError::unavailable(format!(
                    "creating the directory of the SQLite file {}: {err}",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(pool.connect_lazy_with(connect))
}

pub(super) fn postgres_pool(
    url: &DatabaseUrl,
    options: &StoreOptions,
) -> Result<PgPool, StoreError> {
    let statement_ms = options.statement_timeout.as_millis().max(1);
    let connect = PgConnectOptions::from_str(url.expose())
        .map_err(bad_url)?
        // Server-side limits, set at connect: a runaway statement, a lock
        // wait and a transaction left open are all cut off by the server.
        // They append to any `options` the URL carries (a search_path, say).
        .options([
            ("statement_timeout", format!("{statement_ms}ms")),
            ("lock_timeout", format!("{statement_ms}ms")),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", statement_ms * 2),
            ),
        ]);
    Ok(pool_options(options).connect_lazy_with(connect))
}

pub(super) fn mysql_pool(
    url: &DatabaseUrl,
    options: &StoreOptions,
) -> Result<MySqlPool, StoreError> {
    let connect = MySqlConnectOptions::from_str(url.expose()).map_err(bad_url)?;
    let statement_timeout = options.statement_timeout;
    let pool = pool_options(options).after_connect(move |conn, _meta| {
        Box::pin(async move {
            // MariaDB and MySQL name the statement limit differently (and
            // MySQL's covers SELECTs only), so ask which one this is.
            let version: String = sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(&mut *conn)
                .await?;
            // Lock waits have their own limits, in whole seconds, and the
            // InnoDB row lock default is 50 s: bring both down to ours.
            let lock_secs = statement_timeout.as_secs_f64().ceil().max(1.0);
            // The values are numbers we computed, not outside input, so
            // formatting them into the statement is safe.
            let set_limit = if version.contains("MariaDB") {
                format!(
                    "SET SESSION max_statement_time = {:.3}, lock_wait_timeout = {lock_secs}, \
                     innodb_lock_wait_timeout = {lock_secs}",
                    statement_timeout.as_secs_f64()
                )
            } else {
                format!(
                    "SET SESSION max_execution_time = {}, lock_wait_timeout = {lock_secs}, \
                     innodb_lock_wait_timeout = {lock_secs}",
                    statement_timeout.as_millis()
                )
            };
            sqlx::query(AssertSqlSafe(set_limit))
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    });
    Ok(pool.connect_lazy_with(connect))
}
