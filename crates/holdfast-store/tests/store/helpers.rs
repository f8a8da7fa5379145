//! What the store tests need besides a fresh database per test (that is
//! `holdfast_testkit::db`): a lock held from outside the store, and
//! servers that are down or never answer.

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
