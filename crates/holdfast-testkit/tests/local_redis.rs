//! `LocalRedis`: a private redis-server per test, and the ways tests break it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast_testkit::{
    LocalRedis, LocalRedisOptions, init_tracing, redis, redis_with_aof, wait_until,
};
use redis::aio::MultiplexedConnection;

async fn connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn set(url: &str, key: &str, value: &str) -> redis::RedisResult<()> {
    let mut connection = connect(url).await?;
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut connection)
        .await
}

async fn get(url: &str, key: &str) -> redis::RedisResult<Option<String>> {
    let mut connection = connect(url).await?;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await
}

/// Checks that `server` answers `value` for `key`.
async fn assert_holds(server: &LocalRedis, key: &str, value: &str) {
    assert_eq!(
        get(&server.url(), key).await.expect("GET"),
        Some(value.to_owned())
    );
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_started_server_answers_ping_and_set_get() {
    init_tracing();
    let server = redis().await;

    let mut connection = connect(&server.url()).await.expect("connect");
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .expect("PING");
    set(&server.url(), "greeting", "hello").await.expect("SET");

    assert_eq!(pong, "PONG");
    assert_holds(&server, "greeting", "hello").await;
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert!(server.dir().join("redis.log").exists());
}

#[tokio::test]
async fn a_server_killed_with_sigkill_restarts_on_the_same_port_with_its_aof_data() {
    init_tracing();
    let mut server = redis_with_aof().await;
    let port = server.port();
    let old_pid = server.pid().expect("running");
    set(&server.url(), "survivor", "still here")
        .await
        .expect("SET");

    server.kill9().await;
    assert_eq!(server.pid(), None);
    assert!(
        get(&server.url(), "survivor").await.is_err(),
        "a killed server must not answer"
    );
    server.restart().await.expect("restart");

    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(old_pid));
    assert_holds(&server, "survivor", "still here").await;
}

#[tokio::test]
async fn a_gracefully_stopped_server_restarts_with_its_aof_data() {
    init_tracing();
    let mut server = redis_with_aof().await;
    set(&server.url(), "kept", "yes").await.expect("SET");

    server.stop().await;
    assert_eq!(server.pid(), None);
    server.restart().await.expect("restart");

    assert_holds(&server, "kept", "yes").await;
}

#[tokio::test]
async fn a_server_with_a_password_rejects_unauthenticated_commands_and_accepts_its_url() {
    init_tracing();
    let server = LocalRedis::start(LocalRedisOptions {
        password: Some("s3cret/@:".to_owned()),
        ..LocalRedisOptions::default()
    })
    .await
    .expect("start");
    let url_without_password = format!("redis://127.0.0.1:{}/", server.port());

    let unauthenticated = set(&url_without_password, "k", "v").await;
    let authenticated = set(&server.url(), "k", "v").await;

    let error = unauthenticated.expect_err("a command without AUTH must be refused");
    assert!(
        error.to_string().contains("NOAUTH"),
        "unexpected error: {error}"
    );
    authenticated.expect("the url with the password is accepted");
}

#[tokio::test]
async fn a_password_set_through_config_set_is_required_and_carried_by_the_url() {
    init_tracing();
    let mut server = redis().await;
    let old_url = server.url();

    server
        .config_set("requirepass", "rotated")
        .await
        .expect("CONFIG SET");

    assert!(set(&old_url, "k", "v").await.is_err());
    assert_eq!(
        server.url(),
        format!("redis://:rotated@127.0.0.1:{}/", server.port())
    );
    set(&server.url(), "k", "v")
        .await
        .expect("SET with the new password");
    server.restart().await.expect("restart keeps the password");
    set(&server.url(), "k", "v")
        .await
        .expect("SET after restart");
}

#[tokio::test]
async fn two_servers_get_different_ports() {
    init_tracing();
    let (first, second) = tokio::join!(redis(), redis());

    assert_ne!(first.port(), second.port());
    assert_ne!(first.dir(), second.dir());
}

#[tokio::test]
async fn dropping_a_local_redis_stops_its_process_and_removes_its_directory() {
    init_tracing();
    let server = redis().await;
    let pid = server.pid().expect("running");
    let dir = server.dir().to_path_buf();
    assert!(process_exists(pid));

    drop(server);

    wait_until(
        Duration::from_secs(1),
        "the redis-server process is gone",
        || std::future::ready(!process_exists(pid)),
    )
    .await;
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_missing_binary_is_reported_with_how_to_install_it() {
    init_tracing();
    let result = LocalRedis::start(LocalRedisOptions {
        binary: Some(PathBuf::from("/nonexistent/redis-server")),
        ..LocalRedisOptions::default()
    })
    .await;

    let error = result.expect_err("the binary does not exist");
    assert!(!error.is_retryable());
    assert!(
        error
            .to_string()
            .contains("apt-get install -y redis-server"),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn a_server_that_rejects_its_arguments_fails_with_its_log() {
    init_tracing();
    let result = LocalRedis::start(LocalRedisOptions {
        extra_args: vec!["--no-such-option".to_owned(), "1".to_owned()],
        ..LocalRedisOptions::default()
    })
    .await;

    let error = result.expect_err("redis-server refuses unknown options");
    assert!(!error.is_retryable(), "unexpected error: {error}");
    assert!(
        error.to_string().contains("no-such-option"),
        "the error should quote the server's complaint: {error}"
    );
}
