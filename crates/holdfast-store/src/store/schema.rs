//! The schema: migrations per engine, and the column listing that lets
//! the tests check that all three engines end with the same tables.

use super::{Pools, Store, with_pool};
use crate::StoreError;
use crate::options::Backend;
use crate::sql::statements;

impl Store {
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
        self.fill_folded().await?;
        tracing::info!(backend = %self.backend(), "database migrations applied");
        Ok(())
    }

    /// Gives users written before the folded copies existed their copies,
    /// a batch at a time in id order (each batch starts past the last one,
    /// so the table is read once): the folding is Rust's, which no
    /// migration can run. Instances of an older holdfast must be stopped
    /// before the upgrade: one that renames a user after this ran leaves
    /// the old folded name behind.
    async fn fill_folded(&self) -> Result<(), StoreError> {
        const BATCH: i64 = 500;
        let mut filled = 0usize;
        let mut after = 0i64;
        loop {
            let rows: Vec<(i64, String, String)> = self
                .call_within("migrate", self.inner.options.maintenance_timeout, async {
                    with_pool!(self, |pool, sql| sqlx::query_as(sql.users_unfolded)
                        .bind(after)
                        .bind(BATCH)
                        .fetch_all(pool)
                        .await)
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let count = rows.len();
            after = rows.last().map_or(after, |(id, ..)| *id);
            self.call_within("migrate", self.inner.options.maintenance_timeout, async {
                with_pool!(self, |pool, sql| {
                    let mut tx = pool.begin().await?;
                    for (id, name, email) in &rows {
                        sqlx::query(sql.set_user_folded)
                            .bind(super::fold(name))
                            .bind(super::fold(email))
                            .bind(*id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await
                })
            })
            .await?;
            filled += count;
            if count < BATCH as usize {
                break;
            }
        }
        if filled > 0 {
            tracing::info!(users = filled, "folded copies of names and emails written");
        }
        Ok(())
    }

    /// The column names of `table`, in order, as the engine reports them:
    /// for checking that every engine ended with the same schema.
    pub async fn table_columns(&self, table: &str) -> Result<Vec<String>, StoreError> {
        // Each engine lists a table's columns its own way.
        let sql = statements(self.backend());
        let list_columns = match self.backend() {
            Backend::Sqlite => sql.sqlite_columns,
            Backend::Postgres => sql.postgres_columns,
            Backend::MySql => sql.mysql_columns,
        };
        self.call("table_columns", async {
            with_pool!(self, |pool, _sql| sqlx::query_scalar(list_columns)
                .bind(table)
                .fetch_all(pool)
                .await)
        })
        .await
    }
}
