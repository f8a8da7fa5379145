//! One fresh database per test and engine, dropped afterwards.
//!
//! SQLite always: a file in a temporary directory. PostgreSQL (when
//! `HOLDFAST_TEST_POSTGRES_URL` is set): a schema `t_<random>` in the given
//! database, selected for every pooled connection by a `search_path` in the
//! connect options, so tests run side by side on one server. MariaDB/MySQL
//! (when `HOLDFAST_TEST_MYSQL_URL` is set): a database `t_<random>` on the
//! given server. An engine whose variable is unset is skipped with a note.
//!
//! Two ways in:
//! - [`run`] hands the test a migrated, empty [`Store`] (a [`TestDb`]), for
//!   tests of the store itself.
//! - [`run_on_empty`] hands the test only the [`DatabaseUrl`] of a database
//!   with nothing in it, for code that migrates and seeds by itself, such as
//!   the api role's start-up.
//!
//! Both drop the schema or database when the test ends, also when it
//! panics: the test runs as a task of its own, so that its panic comes back
//! as a value, the database is dropped, and the panic is raised again.
//!
//! [`on_every_engine!`](crate::on_every_engine) turns an `async fn(T)` into
//! one `#[tokio::test]` per engine through either way in (or a wrapper of
//! the caller's own, such as one that starts the api role on the database).

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
    /// SQLite, always available.
    Sqlite,
    /// PostgreSQL, when [`POSTGRES_VAR`] is set.
    Postgres,
    /// MariaDB or MySQL, when [`MYSQL_VAR`] is set.
    MySql,
}

impl Engine {
    /// Every engine, SQLite first.
    pub const ALL: [Engine; 3] = [Engine::Sqlite, Engine::Postgres, Engine::MySql];

    /// The store backend this engine maps to.
    pub fn backend(self) -> Backend {
        match self {
            Engine::Sqlite => Backend::Sqlite,
            Engine::Postgres => Backend::Postgres,
            Engine::MySql => Backend::MySql,
        }
    }
}

/// Makes one `#[tokio::test]` per engine for each named test: a module
/// `<test>` with the tests `sqlite`, `postgres` and `mysql`, each calling
/// `runner(Engine::…, <test>)`.
///
/// `runner` is an absolute path (`crate::…` or `holdfast_testkit::…`, as it
/// is used from inside the new module) to an async function of an
/// [`Engine`] and the test, such as [`run`] or [`run_on_empty`]; each test
/// is an `async fn` in the module where the macro is called.
///
/// ```ignore
/// holdfast_testkit::on_every_engine!(holdfast_testkit::db::run =>
///     a_user_round_trips_through_create_read_update_and_delete,
/// );
///
/// async fn a_user_round_trips_through_create_read_update_and_delete(db: TestDb) {
///     // …
/// }
/// ```
#[macro_export]
macro_rules! on_every_engine {
    ($runner:path => $($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                $runner($crate::db::Engine::Sqlite, super::$test).await;
            }

            #[tokio::test]
            async fn postgres() {
                $runner($crate::db::Engine::Postgres, super::$test).await;
            }

            #[tokio::test]
            async fn mysql() {
                $runner($crate::db::Engine::MySql, super::$test).await;
            }
        }
    )*};
}

/// What a test gets: a migrated, empty store and the URL it was opened
/// with (to open a second store on the same database).
#[derive(Clone)]
pub struct TestDb {
    /// The store, migrated, without rows.
    pub store: Store,
    /// The URL of the test's database.
    pub url: DatabaseUrl,
}

impl TestDb {
    /// Another store on the same database, as a second process would have.
    ///
    /// # Panics
    /// If the store cannot be opened.
    pub async fn second_store(&self) -> Store {
        Store::open(&self.url, StoreOptions::default())
            .await
            .expect("open a second store")
    }
}

/// A database made for one test with nothing in it, not even tables, and
/// how to get rid of it.
pub struct EmptyDatabase {
    url: DatabaseUrl,
    cleanup: Cleanup,
    // Held so the SQLite file lives until the database is dropped.
    _dir: Option<tempfile::TempDir>,
}

enum Cleanup {
    Nothing,
    /// A statement the engine's server runs as its administrator: drops
    /// the schema or database.
    Drop {
        engine: Engine,
        admin_url: String,
        statement: String,
    },
}

impl EmptyDatabase {
    /// A fresh database on `engine`; `None` (with a note) when the engine's
    /// server is not configured.
    ///
    /// # Panics
    /// If the configured server cannot be reached or refuses to create the
    /// schema or database.
    pub async fn create(engine: Engine) -> Option<EmptyDatabase> {
        // The name is ours (t_ and hex digits), never outside input, so it
        // may stand in the statements below as it is.
        let name = format!("t_{:016x}", fastrand::u64(..));
        let (admin_url, create_statement, drop_statement, url) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                return Some(EmptyDatabase {
                    url: DatabaseUrl::sqlite_file(&dir.path().join("holdfast.db")),
                    cleanup: Cleanup::Nothing,
                    _dir: Some(dir),
                });
            }
            Engine::Postgres => {
                let admin_url = server_url(POSTGRES_VAR, "postgres")?;
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options[search_path]={name}");
                let create_statement = format!("CREATE SCHEMA {name}");
                let drop_statement = format!("DROP SCHEMA {name} CASCADE");
                (admin_url, create_statement, drop_statement, url)
            }
            Engine::MySql => {
                let admin_url = server_url(MYSQL_VAR, "mysql")?;
                let url = with_database(&admin_url, &name);
                let create_statement = format!("CREATE DATABASE {name}");
                let drop_statement = format!("DROP DATABASE {name}");
                (admin_url, create_statement, drop_statement, url)
            }
        };
        execute_as_admin(engine, &admin_url, create_statement).await;
        Some(EmptyDatabase {
            url: DatabaseUrl::parse(&url).expect("url"),
            cleanup: Cleanup::Drop {
                engine,
                admin_url,
                statement: drop_statement,
            },
            _dir: None,
        })
    }

    /// The URL to open the database with.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Drops the schema or database (for SQLite, removes the file).
    ///
    /// # Panics
    /// If the server cannot be reached or refuses the drop.
    pub async fn drop_database(self) {
        if let Cleanup::Drop {
            engine,
            admin_url,
            statement,
        } = self.cleanup
        {
            execute_as_admin(engine, &admin_url, statement).await;
        }
    }
}

/// Runs `statement` on a connection of its own to the server of `engine`
/// at `admin_url` (creating or dropping a test's schema or database).
///
/// # Panics
/// If the server cannot be reached or refuses the statement, and for
/// SQLite, which has no server.
async fn execute_as_admin(engine: Engine, admin_url: &str, statement: String) {
    let outcome = match engine {
        Engine::Postgres => execute_once::<sqlx::PgConnection>(admin_url, &statement).await,
        Engine::MySql => execute_once::<sqlx::MySqlConnection>(admin_url, &statement).await,
        Engine::Sqlite => unreachable!("SQLite has no server to administer"),
    };
    if let Err(error) = outcome {
        panic!("the {engine:?} test server did not run `{statement}`: {error}");
    }
}

/// Connects to `url`, runs `statement` and closes the connection again.
async fn execute_once<C>(url: &str, statement: &str) -> Result<(), sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut connection = C::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut connection)
        .await?;
    connection.close().await.ok();
    Ok(())
}

/// A database made for one test, migrated, with a store open on it.
pub struct TestDatabase {
    /// The store and URL the test works with.
    pub db: TestDb,
    database: EmptyDatabase,
}

impl TestDatabase {
    /// A fresh database on `engine`, migrated; `None` (with a note) when the
    /// engine's server is not configured.
    ///
    /// # Panics
    /// If the database cannot be created, opened or migrated.
    pub async fn create(engine: Engine) -> Option<TestDatabase> {
        let database = EmptyDatabase::create(engine).await?;
        let url = database.url().clone();
        let store = Store::open(&url, StoreOptions::default())
            .await
            .expect("open the store");
        store.migrate().await.expect("migrations apply");
        Some(TestDatabase {
            db: TestDb { store, url },
            database,
        })
    }

    /// Closes the store and drops the schema or database.
    ///
    /// # Panics
    /// If the server cannot be reached or refuses the drop.
    pub async fn drop_database(self) {
        self.db.store.close().await;
        self.database.drop_database().await;
    }
}

/// Runs `test` on a fresh, migrated database of `engine`, then drops the
/// database, also when the test panics. Returns at once (after a note) when
/// the engine is not configured.
///
/// # Panics
/// When the test panics (its own panic, raised again after the cleanup),
/// or when the database cannot be made or dropped.
pub async fn run<F, Fut>(engine: Engine, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(database) = TestDatabase::create(engine).await {
        run_then_drop(test(database.db.clone()), database.drop_database()).await;
    }
}

/// Runs `test` with the URL of a fresh database of `engine` with nothing
/// in it (the code under test migrates it), then drops the database, also
/// when the test panics. Returns at once (after a note) when the engine is
/// not configured.
///
/// Whatever the test opened on the database should be closed by the time
/// its future ends; a pool still open merely delays the drop on PostgreSQL
/// and MariaDB until its transactions end.
///
/// # Panics
/// When the test panics (its own panic, raised again after the cleanup),
/// or when the database cannot be made or dropped.
pub async fn run_on_empty<F, Fut>(engine: Engine, test: F)
where
    F: FnOnce(DatabaseUrl) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(database) = EmptyDatabase::create(engine).await {
        run_then_drop(test(database.url().clone()), database.drop_database()).await;
    }
}

/// Runs `test` as a task of its own, so that its panic comes back as a
/// value, then `drop_database`, then raises the test's panic again in the
/// caller, so the harness reports it as the test's own.
async fn run_then_drop(
    test: impl Future<Output = ()> + Send + 'static,
    drop_database: impl Future<Output = ()>,
) {
    let outcome = tokio::spawn(test).await;
    drop_database.await;
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

/// The server URL from `var`, or `None` with a note saying the engine is
/// skipped.
pub fn server_url(var: &str, engine: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            eprintln!("note: {var} is not set; skipping the {engine} run of this test");
            None
        }
    }
}

/// `mysql://user@host:port/db?query` with `db` replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_mysql_url_is_replaced_and_the_rest_kept() {
        for (url, expected) in [
            ("mysql://root@h:3306/test", "mysql://root@h:3306/t_1"),
            ("mysql://root@h:3306", "mysql://root@h:3306/t_1"),
            (
                "mysql://u:p@h/test?ssl-mode=disabled",
                "mysql://u:p@h/t_1?ssl-mode=disabled",
            ),
        ] {
            assert_eq!(with_database(url, "t_1"), expected, "{url}");
        }
    }
}
