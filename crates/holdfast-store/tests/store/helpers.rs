//! What the store tests need besides a fresh database per test (that is
//! `holdfast_testkit::db`) and servers that are down or never answer (that
//! is `holdfast_testkit::net`): a lock held from outside the store.

use holdfast_store::Backend;
use holdfast_testkit::db::TestDb;
use sqlx::Connection;

/// A connection of its own that holds an exclusive lock on `users`, so
/// that writes from the store wait.
pub enum UsersLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

/// Runs `statements` on a connection of its own to `db`, then closes it:
/// for writing rows as another program (or an older holdfast) would.
pub async fn run_statements(db: &TestDb, statements: &[&'static str]) {
    let url = db.url.expose();
    match db.store.backend() {
        Backend::Sqlite => {
            let conn: sqlx::SqliteConnection = connect_and_run(url, statements).await;
            conn.close().await.ok();
        }
        Backend::Postgres => {
            let conn: sqlx::PgConnection = connect_and_run(url, statements).await;
            conn.close().await.ok();
        }
        Backend::MySql => {
            let conn: sqlx::MySqlConnection = connect_and_run(url, statements).await;
            conn.close().await.ok();
        }
    }
}

/// Takes an exclusive lock on the `users` table of `db`.
pub async fn lock_users_table(db: &TestDb) -> UsersLock {
    let url = db.url.expose();
    match db.store.backend() {
        // The database-wide write lock, SQLite's only kind.
        Backend::Sqlite => UsersLock::Sqlite(connect_and_run(url, &["BEGIN IMMEDIATE"]).await),
        Backend::Postgres => UsersLock::Postgres(
            connect_and_run(url, &["BEGIN", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"]).await,
        ),
        Backend::MySql => {
            UsersLock::MySql(connect_and_run(url, &["LOCK TABLES users WRITE"]).await)
        }
    }
}

impl UsersLock {
    /// Lets go of the lock and the connection.
    pub async fn release(self) {
        match self {
            UsersLock::Sqlite(conn) => run_and_close(conn, "ROLLBACK").await,
            UsersLock::Postgres(conn) => run_and_close(conn, "ROLLBACK").await,
            UsersLock::MySql(conn) => run_and_close(conn, "UNLOCK TABLES").await,
        }
    }
}

/// A connection of any of the three engines, as far as these helpers use
/// it: a plain statement run on it must succeed.
trait RunsStatements: Connection {
    async fn execute_statement(&mut self, statement: &'static str);
}

impl<C> RunsStatements for C
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
{
    async fn execute_statement(&mut self, statement: &'static str) {
        sqlx::query(statement).execute(self).await.unwrap();
    }
}

/// A new connection to `url` on which each of `statements` has run.
async fn connect_and_run<C: RunsStatements>(url: &str, statements: &[&'static str]) -> C {
    let mut conn = C::connect(url).await.unwrap();
    for &statement in statements {
        conn.execute_statement(statement).await;
    }
    conn
}

/// Runs `statement` on `conn`, then closes it.
async fn run_and_close<C: RunsStatements>(mut conn: C, statement: &'static str) {
    conn.execute_statement(statement).await;
    conn.close().await.ok();
}
