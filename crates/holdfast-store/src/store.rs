//! The [`Store`]: a connection pool to one database and the repository
//! methods over it.
//!
//! Every method runs through [`Store::call`], which bounds it by
//! `operation_timeout` and sorts its error into a [`StoreError`]; inside,
//! [`with_pool!`] expands the same body once per engine, so the three
//! drivers keep their own types while the code is written once.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlQueryResult};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Database};

use crate::StoreError;
use crate::model::{Entity, NewOrder, NewUser, Order, Product, UpdateUser, User};
use crate::options::{Backend, DatabaseUrl, StoreOptions};
use crate::sql::{escape_like, statements};

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
macro_rules! with_pool {
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
    /// Artificial delay before reads, in microseconds, per [`Entity`]
    /// (indexed by [`delay_slot`]). Atomics so that a demo or chaos control
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
            Backend::Sqlite => Pools::Sqlite(sqlite_pool(url, &options).await?),
            Backend::Postgres => Pools::Postgres(postgres_pool(url, &options)?),
            Backend::MySql => Pools::MySql(mysql_pool(url, &options)?),
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

    /// Sets an artificial delay before every read of `entity`, for demos of
    /// a slow database (the cache then shows its worth). Zero by default.
    /// Affects every clone of this store.
    pub fn set_read_delay(&self, entity: Entity, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.read_delays[delay_slot(entity)].store(micros, Ordering::Relaxed);
    }

    /// The artificial delay before reads of `entity`.
    pub fn read_delay(&self, entity: Entity) -> Duration {
        Duration::from_micros(self.inner.read_delays[delay_slot(entity)].load(Ordering::Relaxed))
    }

    /// Builder form of [`Store::set_read_delay`] for products, the entity the
    /// demo slows down.
    pub fn with_product_read_delay(self, delay: Duration) -> Self {
        self.set_read_delay(Entity::Product, delay);
        self
    }

    /// Builder form of [`Store::set_read_delay`].
    pub fn with_read_delay(self, entity: Entity, delay: Duration) -> Self {
        self.set_read_delay(entity, delay);
        self
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

    /// Applies the migrations of this engine that have not run yet. Safe to
    /// call on every start and from several processes at once (sqlx takes a
    /// database lock on PostgreSQL and MySQL; SQLite serializes writers).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
        static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
        static MYSQL: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

        let run = async {
            let result = match &self.inner.pool {
                Pools::Sqlite(pool) => SQLITE.run(pool).await,
                Pools::Postgres(pool) => POSTGRES.run(pool).await,
                Pools::MySql(pool) => MYSQL.run(pool).await,
            };
            result.map_err(|err| sqlx::Error::Migrate(Box::new(err)))
        };
        self.call_within("migrate", self.inner.options.maintenance_timeout, run)
            .await?;
        tracing::info!(backend = %self.backend(), "database migrations applied");
        Ok(())
    }

    /// The user with `id`, if any.
    pub async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.delay_read(Entity::User).await;
        self.fetch_user(id).await
    }

    async fn fetch_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.call("user", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, User>(sql.user_by_id)
                .bind(id)
                .fetch_optional(pool)
                .await)
        })
        .await
    }

    /// Users whose name or email contains `query`, ignoring case, in id
    /// order, at most `limit` (capped at [`MAX_PAGE`]).
    ///
    /// The text matches literally: `%` and `_` are not wildcards, and the
    /// text reaches the database only as a bind parameter. An empty query
    /// finds nobody. Case folding is the engine's `LOWER`, which SQLite
    /// applies to ASCII letters only.
    pub async fn search_users(&self, query: &str, limit: u32) -> Result<Vec<User>, StoreError> {
        let query = query.trim();
        if query.chars().count() > MAX_SEARCH_LEN {
            return Err(StoreError::invalid(format!(
                "search text longer than {MAX_SEARCH_LEN} characters"
            )));
        }
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let pattern = format!("%{}%", escape_like(&query.to_lowercase()));
        let limit = i64::from(limit.min(MAX_PAGE));
        self.delay_read(Entity::User).await;
        self.call("search_users", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, User>(
                sql.search_users
            )
            .bind(pattern.as_str())
            .bind(pattern.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await)
        })
        .await
    }

    /// Creates a user. An email that another user has is a
    /// [`StoreError::Conflict`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let created_at = now_ms();
        let (name, email) = (new.name.as_str(), new.email.as_str());
        let id = self
            .call("create_user", async {
                let sql = statements(self.backend());
                match &self.inner.pool {
                    Pools::Sqlite(pool) => {
                        sqlx::query_scalar(sql.insert_user_returning_id)
                            .bind(name)
                            .bind(email)
                            .bind(created_at)
                            .fetch_one(pool)
                            .await
                    }
                    Pools::Postgres(pool) => {
                        sqlx::query_scalar(sql.insert_user_returning_id)
                            .bind(name)
                            .bind(email)
                            .bind(created_at)
                            .fetch_one(pool)
                            .await
                    }
                    Pools::MySql(pool) => sqlx::query(sql.insert_user)
                        .bind(name)
                        .bind(email)
                        .bind(created_at)
                        .execute(pool)
                        .await
                        .and_then(mysql_insert_id),
                }
            })
            .await
            .map_err(duplicate_email)?;
        Ok(User {
            id,
            name: name.to_owned(),
            email: email.to_owned(),
            created_at,
        })
    }

    /// Changes the given fields of user `id`; `None` when there is no such
    /// user. An email that another user has is a [`StoreError::Conflict`].
    pub async fn update_user(
        &self,
        id: i64,
        changes: UpdateUser,
    ) -> Result<Option<User>, StoreError> {
        let name = changes.name.as_ref().map(|name| name.as_str());
        let email = changes.email.as_ref().map(|email| email.as_str());
        if name.is_some() || email.is_some() {
            // UPDATE then SELECT rather than RETURNING, which MySQL lacks;
            // rows_affected cannot tell "no such user" either, as MySQL
            // counts only rows whose values changed.
            self.call("update_user", async {
                with_pool!(self, |pool, sql| sqlx::query(sql.update_user)
                    .bind(name)
                    .bind(email)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop))
            })
            .await
            .map_err(duplicate_email)?;
        }
        self.fetch_user(id).await
    }

    /// Deletes user `id`; `false` when there was no such user. A user who
    /// has orders is kept and the answer is a [`StoreError::Conflict`]:
    /// orders are history and are not deleted along with their user.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self
            .call("delete_user", async {
                with_pool!(self, |pool, sql| sqlx::query(sql.delete_user)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected()))
            })
            .await
            .map_err(|err| match err {
                StoreError::Conflict { .. } => {
                    StoreError::conflict(format!("user {id} has orders and cannot be deleted"))
                }
                other => other,
            })?;
        Ok(deleted > 0)
    }

    /// A page of products in id order: at most `limit` (capped at
    /// [`MAX_PAGE`]) after skipping `offset`.
    pub async fn products(&self, limit: u32, offset: u32) -> Result<Vec<Product>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::from(limit.min(MAX_PAGE));
        let offset = i64::from(offset);
        self.delay_read(Entity::Product).await;
        self.call("products", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, Product>(
                sql.products_page
            )
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
        })
        .await
    }

    /// The product with `id`, if any.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        self.delay_read(Entity::Product).await;
        self.call("product", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, Product>(
                sql.product_by_id
            )
            .bind(id)
            .fetch_optional(pool)
            .await)
        })
        .await
    }

    /// Places an order. The total is the product's price times the
    /// quantity, computed by the database in the same statement that
    /// inserts the order, so it uses the price of that instant. An unknown
    /// user or product is a [`StoreError::NotFound`] naming which. Stock is
    /// not reserved or decremented.
    pub async fn create_order(&self, new: NewOrder) -> Result<Order, StoreError> {
        let created_at = now_ms();
        let quantity = new.quantity.get();
        let inserted = self
            .call("create_order", async {
                let sql = statements(self.backend());
                match &self.inner.pool {
                    Pools::Sqlite(pool) => {
                        sqlx::query_as::<_, Order>(sql.insert_order_returning)
                            .bind(quantity)
                            .bind(quantity)
                            .bind(created_at)
                            .bind(new.user_id)
                            .bind(new.product_id)
                            .fetch_optional(pool)
                            .await
                    }
                    Pools::Postgres(pool) => {
                        sqlx::query_as::<_, Order>(sql.insert_order_returning)
                            .bind(quantity)
                            .bind(quantity)
                            .bind(created_at)
                            .bind(new.user_id)
                            .bind(new.product_id)
                            .fetch_optional(pool)
                            .await
                    }
                    Pools::MySql(pool) => {
                        let done = sqlx::query(sql.insert_order)
                            .bind(quantity)
                            .bind(quantity)
                            .bind(created_at)
                            .bind(new.user_id)
                            .bind(new.product_id)
                            .execute(pool)
                            .await?;
                        if done.rows_affected() == 0 {
                            return Ok(None);
                        }
                        let id = mysql_insert_id(done)?;
                        sqlx::query_as::<_, Order>(sql.order_by_id)
                            .bind(id)
                            .fetch_optional(pool)
                            .await
                    }
                }
            })
            .await;
        match inserted {
            Ok(Some(order)) => return Ok(order),
            // No row inserted (the user or product is missing), or a foreign
            // key stopped the insert (one was deleted between the
            // statement's read and its write): the same answer either way.
            Ok(None) | Err(StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other),
        }
        // Nothing was inserted: find out which side is missing, for a
        // useful answer.
        let user_exists = self
            .call("create_order", async {
                with_pool!(self, |pool, sql| sqlx::query_scalar::<_, i64>(
                    sql.count_user
                )
                .bind(new.user_id)
                .fetch_one(pool)
                .await)
            })
            .await?
            > 0;
        let (entity, id) = if user_exists {
            (Entity::Product, new.product_id)
        } else {
            (Entity::User, new.user_id)
        };
        Err(StoreError::NotFound { entity, id })
    }

    /// The order with `id`, if any.
    pub async fn order(&self, id: i64) -> Result<Option<Order>, StoreError> {
        self.delay_read(Entity::Order).await;
        self.call("order", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, Order>(
                sql.order_by_id
            )
            .bind(id)
            .fetch_optional(pool)
            .await)
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

    /// The column names of `table`, in order, as the engine reports them:
    /// for checking that every engine ended with the same schema.
    pub async fn table_columns(&self, table: &str) -> Result<Vec<String>, StoreError> {
        self.call("table_columns", async {
            let sql = statements(self.backend());
            match &self.inner.pool {
                Pools::Sqlite(pool) => {
                    sqlx::query_scalar(sql.sqlite_columns)
                        .bind(table)
                        .fetch_all(pool)
                        .await
                }
                Pools::Postgres(pool) => {
                    sqlx::query_scalar(sql.postgres_columns)
                        .bind(table)
                        .fetch_all(pool)
                        .await
                }
                Pools::MySql(pool) => {
                    sqlx::query_scalar(sql.mysql_columns)
                        .bind(table)
                        .fetch_all(pool)
                        .await
                }
            }
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

    async fn delay_read(&self, entity: Entity) {
        let delay = self.read_delay(entity);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

fn delay_slot(entity: Entity) -> usize {
    match entity {
        Entity::User => 0,
        Entity::Product => 1,
        Entity::Order => 2,
    }
}

/// A unique violation on users can only be the email (the id is never
/// given), so say that in words a client can read.
fn duplicate_email(err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict { .. } => {
            StoreError::conflict("a user with this email already exists")
        }
        other => other,
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

async fn sqlite_pool(url: &DatabaseUrl, options: &StoreOptions) -> Result<SqlitePool, StoreError> {
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

fn postgres_pool(url: &DatabaseUrl, options: &StoreOptions) -> Result<PgPool, StoreError> {
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

fn mysql_pool(url: &DatabaseUrl, options: &StoreOptions) -> Result<MySqlPool, StoreError> {
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
