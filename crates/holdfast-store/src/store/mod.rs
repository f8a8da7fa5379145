//! The [`Store`]: a connection pool to one database and the repository
//! methods over it, one file per concern:
//!
//! - this file: the pool of each engine ([`Pools`]), [`with_pool!`], opening
//!   a store, health (`ping`, pool status, row counts), [`Store::call`],
//!   which bounds every method by `operation_timeout` and sorts its error
//!   into a [`StoreError`], and the read by primary key all entities share;
//! - `engines`: each engine's connect options and server-side limits;
//! - `schema`: migrations and the schema check the tests use;
//! - `users`, `products`, `orders`: how each entity is read and written;
//! - `read_delay`: the artificial read delay of the slow-database demo.
//!
//! Seeding, which also writes through the store, is [`crate::seed`], public
//! for its row generators.
//!
//! Inside [`Store::call`], [`with_pool!`] expands the same body once per
//! engine, so the three drivers keep their own types while the code is
//! written once.

mod engines;
mod orders;
mod products;
mod read_delay;
mod schema;
mod users;

pub(crate) use users::fold;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use sqlx::mysql::{MySqlPool, MySqlQueryResult, MySqlRow};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::StoreError;
use crate::options::{Backend, DatabaseUrl, StoreOptions};
use crate::sql::Statements;

/// Largest page a list or search returns, whatever the caller asks.
pub const MAX_PAGE: u32 = 1000;

/// Longest search text accepted, in characters.
pub const MAX_SEARCH_LEN: usize = 254;

/// One pool per engine. An enum rather than sqlx's `AnyPool`: `Any` narrows
/// every value to a few common types and hides each driver's options
/// (PostgreSQL `statement_timeout` at connect, SQLite pragmas, MySQL's
/// `LAST_INSERT_ID`), while the enum keeps each driver whole at the cost of
/// a `match` that [`with_pool!`] writes for us.
pub(crate) enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the typed pool of whichever engine the
/// store has, and `$sql` to that engine's statement texts. The body is
/// compiled once per engine, so it must type-check for all three.
///
/// The form `|pool, sql| returning: $returning, mysql: $mysql` is for
/// inserts that read back what they wrote: SQLite and PostgreSQL share
/// `$returning` (with `RETURNING`), MySQL, which has no `RETURNING`, runs
/// `$mysql`.
macro_rules! with_pool {
    ($store:expr, |$pool:ident, $sql:ident| returning: $returning:expr, mysql: $mysql:expr $(,)?) => {{
        let $sql = $crate::sql::statements($store.backend());
        match &$store.inner.pool {
            $crate::store::Pools::Sqlite($pool) => $returning,
            $crate::store::Pools::Postgres($pool) => $returning,
            $crate::store::Pools::MySql($pool) => $mysql,
        }
    }};
    ($store:expr, |$pool:ident, $sql:ident| $body:expr) => {{
        let $sql = $crate::sql::statements($store.backend());
        match &$store.inner.pool {
            $crate::store::Pools::Sqlite($pool) => $body,
            $crate::store::Pools::Postgres($pool) => $body,
            $crate::store::Pools::MySql($pool) => $body,
        }
    }};
}
pub(crate) use with_pool;

/// The SQL source of truth: users, products and orders in SQLite,
/// PostgreSQL or MySQL/MariaDB.
///
/// Cloning is cheap and clones share the pool and the read delays.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pools,
    backend: Backend,
    pub(crate) options: StoreOptions,
    /// Artificial delay before reads, in microseconds, per
    /// [`Entity`](crate::Entity) (indexed by
    /// [`delay_slot`](read_delay::delay_slot)). Atomics so that a demo or chaos control
    /// can change them while requests run, through any clone.
    read_delays: [AtomicU64; 3],
}

/// Size of the pool right now, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Connections open (idle or in use).
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most the pool will open.
    pub max: u32,
}

/// Rows per table, for seeding reports and `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows in `users`.
    pub users: i64,
    /// Rows in `products`.
    pub products: i64,
    /// Rows in `orders`.
    pub orders: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Builds a store for `url` without connecting: a database that is down
    /// does not stop a service from starting (its calls then fail with
    /// `Unavailable` until it is back). Fails only on a URL the driver
    /// rejects, or when the directory of an SQLite file cannot be created.
    ///
    /// Must run inside a Tokio runtime: the pool spawns its upkeep task.
    pub async fn open(url: &DatabaseUrl, options: StoreOptions) -> Result<Store, StoreError> {
        let pool = match url.backend() {
            Backend::Sqlite => Pools::Sqlite(engines::sqlite_pool(url, &options).await?),
            Backend::Postgres => Pools::Postgres(engines::postgres_pool(url, &options)?),
            Backend::MySql => Pools::MySql(engines::mysql_pool(url, &options)?),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                backend: url.backend(),
                options,
                read_delays: Default::default(),
            }),
        })
    }

    /// [`Store::open`], then [`Store::ping`]: for callers that want to fail
    /// at start-up when the database is not there.
    pub async fn connect(url: &DatabaseUrl, options: StoreOptions) -> Result<Store, StoreError> {
        let store = Store::open(url, options).await?;
        store.ping().await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The limits this store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Connections open and idle.
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle) = with_pool!(self, |pool, _sql| (pool.size(), pool.num_idle()));
        PoolStatus {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.inner.options.max_connections,
        }
    }

    /// Closes every connection; calls made afterwards fail with
    /// `Unavailable`. Waits for connections in use to come back.
    pub async fn close(&self) {
        with_pool!(self, |pool, _sql| pool.close().await)
    }

    /// Whether the database answers a trivial query, within the acquire
    /// timeout when it is down.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", async {
            with_pool!(self, |pool, sql| sqlx::query(sql.ping)
                .execute(pool)
                .await
                .map(drop))
        })
        .await
    }

    /// Rows per table.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.call("counts", async {
            with_pool!(self, |pool, sql| {
                let users = sqlx::query_scalar(sql.count_users).fetch_one(pool).await?;
                let products = sqlx::query_scalar(sql.count_products)
                    .fetch_one(pool)
                    .await?;
                let orders = sqlx::query_scalar(sql.count_orders).fetch_one(pool).await?;
                Ok(Counts {
                    users,
                    products,
                    orders,
                })
            })
        })
        .await
    }

    /// Runs one store call under `operation_timeout`, sorting its error.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.call_within(operation, self.inner.options.operation_timeout, work)
            .await
    }

    /// Runs one store call under `limit`, sorting its error.
    pub(crate) async fn call_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(limit, work).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => StoreError::from_sqlx(self.backend(), operation, err),
            Err(_) => StoreError::timeout(format!("{operation} took longer than {limit:?}")),
        };
        tracing::debug!(
            backend = %self.backend(),
            operation,
            code = result.code(),
            error = %result,
            "store call failed"
        );
        Err(result)
    }
}

impl Store {
    /// The row with `id` that the statement `by_id` picks reads, if any: how
    /// a user, a product and an order are each read by primary key.
    pub(crate) async fn row_by_id<T>(
        &self,
        operation: &'static str,
        by_id: fn(&Statements) -> &'static str,
        id: i64,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send
            + Unpin
            + for<'r> FromRow<'r, SqliteRow>
            + for<'r> FromRow<'r, PgRow>
            + for<'r> FromRow<'r, MySqlRow>,
    {
        self.call(operation, async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, T>(by_id(sql))
                .bind(id)
                .fetch_optional(pool)
                .await)
        })
        .await
    }
}

/// The id MySQL assigned to the row just inserted.
fn mysql_insert_id(done: MySqlQueryResult) -> Result<i64, sqlx::Error> {
    i64::try_from(done.last_insert_id())
        .map_err(|_| sqlx::Error::Protocol("LAST_INSERT_ID beyond i64".into()))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
