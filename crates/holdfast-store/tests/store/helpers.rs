//! One fresh, migrated database per test and engine, dropped afterwards.
//!
//! SQLite: a file in a temporary directory. PostgreSQL (when
//! `HOLDFAST_TEST_POSTGRES_URL` is set): a schema `t_<random>` in the given
//! database, selected for every pooled connection by a `search_path` in the
//! connect options, so tests run side by side on one server. MariaDB/MySQL
//! (when `HOLDFAST_TEST_MYSQL_URL` is set): a database `t_<random>` on the
//! given server. An engine whose variable is unset is skipped with a note.

use std::future::Future;

use holdfast_store::{Backend, DatabaseUrl, Store, StoreOptions};
use sqlx::{AssertSqlSafe, Connection};

/// Variable naming the PostgreSQL server for tests.
pub const POSTGRES_VAR: &str = "HOLDFAST_TEST_POSTGRES_URL";
/// Variable naming the MariaDB/MySQL server for tests.
pub const MYSQL_VAR: &str = "HOLDFAST_TEST_MYSQL_URL";

/// The engines a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    MySql,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Sqlite, Engine::Postgres, Engine::MySql];
}

/// What a test gets: a migrated, empty store and the URL it was opened
/// with (to open a second store on the same database).
#[derive(Clone)]
pub struct TestDb {
    pub store: Store,
    pub url: DatabaseUrl,
}

impl TestDb {
    /// Another store on the same database, as a second process would have.
    pub async fn second_store(&self) -> Store {
        Store::open(&self.url, StoreOptions::default())
            .await
            .expect("open a second store")
    }
}

/// A database made for one test, and how to get rid of it.
pub struct TestDatabase {
    pub db: TestDb,
    cleanup: Cleanup,
    // Held so the SQLite file lives until the test ends.
    _dir: Option<tempfile::TempDir>,
}

enum Cleanup {
    Nothing,
    PostgresSchema { admin_url: String, schema: String },
    MySqlDatabase { admin_url: String, database: String },
}

impl TestDatabase {
    /// A fresh database on `engine`, migrated; `None` (with a note) when the
    /// engine's server is not configured.
    pub async fn create(engine: Engine) -> Option<TestDatabase> {
        let name = format!("t_{:016x}", fastrand::u64(..));
        let (url, cleanup, dir) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db"));
                (url, Cleanup::Nothing, Some(dir))
            }
            Engine::Postgres => {
                let admin_url = server_url(POSTGRES_VAR, "postgres")?;
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to the PostgreSQL test server");
                // The name is ours (t_ and hex digits), never outside input.
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create a test schema");
                admin.close().await.ok();
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options[search_path]={name}");
                let cleanup = Cleanup::PostgresSchema {
                    admin_url,
                    schema: name,
                };
                (DatabaseUrl::parse(&url).expect("url"), cleanup, None)
            }
            Engine::MySql => {
                let admin_url = server_url(MYSQL_VAR, "mysql")?;
                let mut admin = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .expect("connect to the MySQL test server");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create a test database");
                admin.close().await.ok();
                let url = with_database(&admin_url, &name);
                let cleanup = Cleanup::MySqlDatabase {
                    admin_url,
                    database: name,
                };
                (DatabaseUrl::parse(&url).expect("url"), cleanup, None)
            }
        };
        let store = Store::open(&url, StoreOptions::default())
            .await
            .expect("open the store");
        store.migrate().await.expect("migrations apply");
        Some(TestDatabase {
            db: TestDb { store, url },
            cleanup,
            _dir: dir,
        })
    }

    /// Closes the store and drops the schema or database.
    pub async fn drop_database(self) {
        self.db.store.close().await;
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::PostgresSchema { admin_url, schema } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to drop the schema");
                sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test schema");
                admin.close().await.ok();
            }
            Cleanup::MySqlDatabase {
                admin_url,
                database,
            } => {
                let mut admin = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .expect("connect to drop the database");
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE {database}")))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test database");
                admin.close().await.ok();
            }
        }
    }
}

/// Runs `test` on a fresh database of `engine`, then drops the database,
/// also when the test panics (the test runs as its own task so that its
/// panic comes back here as a value).
pub async fn run<F, Fut>(engine: Engine, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = TestDatabase::create(engine).await else {
        return;
    };
    let outcome = tokio::spawn(test(database.db.clone())).await;
    database.drop_database().await;
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

/// The server URL from `var`, or `None` with a note saying the engine is
/// skipped.
fn server_url(var: &str, engine: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            eprintln!("note: {var} is not set; skipping the {engine} run of this test");
            None
        }
    }
}

/// `mysql://user@host:port/db?query` with `db` replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// The backend a test engine maps to.
pub fn backend(engine: Engine) -> Backend {
    match engine {
        Engine::Sqlite => Backend::Sqlite,
        Engine::Postgres => Backend::Postgres,
        Engine::MySql => Backend::MySql,
    }
}

/// A connection of its own that holds an exclusive lock on `users`, so
/// that writes from the store wait.
pub enum UsersLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

/// Takes an exclusive lock on the `users` table of `db`.
pub async fn lock_users_table(db: &TestDb) -> UsersLock {
    let url = db.url.expose();
    match db.store.backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            // The database-wide write lock, SQLite's only kind.
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            UsersLock::Sqlite(conn)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            UsersLock::Postgres(conn)
        }
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
            sqlx::query("LOCK TABLES users WRITE")
                .execute(&mut conn)
                .await
                .unwrap();
            UsersLock::MySql(conn)
        }
    }
}

impl UsersLock {
    /// Lets go of the lock and the connection.
    pub async fn release(self) {
        match self {
            UsersLock::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.ok();
            }
            UsersLock::Postgres(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.ok();
            }
            UsersLock::MySql(mut conn) => {
                sqlx::query("UNLOCK TABLES")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.ok();
            }
        }
    }
}

/// A local TCP port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A server that accepts connections and never says a word, like a
/// database host whose process is stopped (SIGSTOP) or a black-holing
/// proxy. Dropping the handle stops it.
pub async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    // Keeps every accepted socket open until the test aborts the task.
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}
