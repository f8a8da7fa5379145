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
