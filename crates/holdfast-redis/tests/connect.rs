//! Connecting for real: TLS with a CA file, mutual TLS, the certificate
//! errors an operator meets, and the plain mistakes (a wrong host, port or
//! password), each against a real redis-server this test starts. Every
//! failure must name the address and the cause in `/health`'s `last_error`.

use std::time::Duration;

use holdfast_redis::{ConnState, Redis, RedisConfig, RedisError, TlsOptions};
use holdfast_resilience::Tasks;
use holdfast_testkit::tls::TestCerts;
use holdfast_testkit::{LocalRedis, LocalRedisOptions, LocalTls, quick_redis_config};

async fn tls_server(certs: &TestCerts, mutual: bool) -> LocalRedis {
    LocalRedis::start(LocalRedisOptions {
        tls: Some(LocalTls {
            cert_file: certs.server_cert(),
            key_file: certs.server_key(),
            ca_file: certs.ca(),
            client: mutual.then(|| (certs.client_cert(), certs.client_key())),
        }),
        ..LocalRedisOptions::default()
    })
    .await
    .expect("a TLS redis-server")
}

fn config(url: String, tls: TlsOptions) -> RedisConfig {
    let mut cfg = quick_redis_config(url);
    cfg.tls = tls;
    cfg
}

/// Starts a handle and waits until it is ready (`true`) or has failed to
/// connect at least once (`false`); the handle, to read its health.
async fn connect(cfg: RedisConfig, tasks: &Tasks) -> (Redis, bool) {
    let redis = Redis::start(cfg, tasks).expect("valid settings");
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < give_up {
        if redis.state() == ConnState::Ready {
            return (redis, true);
        }
        if redis.health().last_error.is_some() {
            return (redis, false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (redis, false)
}

fn last_error(redis: &Redis) -> String {
    redis.health().last_error.unwrap_or_default()
}

#[tokio::test]
async fn tls_with_the_ca_file_carries_commands() {
    let certs = TestCerts::localhost();
    let server = tls_server(&certs, false).await;
    let tasks = Tasks::new();
    let tls = TlsOptions {
        ca_file: Some(certs.ca()),
        ..TlsOptions::default()
    };
    let (redis, ready) = connect(config(server.url(), tls), &tasks).await;
    assert!(ready, "{:?}", redis.health());
    let pong: String = redis.cmd(&redis::cmd("PING")).await.expect("PING over TLS");
    assert_eq!(pong, "PONG");
    assert!(server.url().starts_with("rediss://"));
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCerts::localhost();
    let server = tls_server(&certs, true).await;
    let tasks = Tasks::new();
    let without = TlsOptions {
        ca_file: Some(certs.ca()),
        ..TlsOptions::default()
    };
    let (refused, ready) = connect(config(server.url(), without.clone()), &tasks).await;
    assert!(
        !ready,
        "a server that wants a client certificate refuses one without"
    );
    assert_ne!(refused.state(), ConnState::Ready);
    let with = TlsOptions {
        client_cert: Some(certs.client_cert()),
        client_key: Some(certs.client_key()),
        ..without
    };
    let (redis, ready) = connect(config(server.url(), with), &tasks).await;
    assert!(ready, "{:?}", redis.health());
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn certificate_errors_say_what_is_wrong() {
    let tasks = Tasks::new();
    let certs = TestCerts::localhost();
    let server = tls_server(&certs, false).await;
    let port = server.port();

    // Signed by an authority the client was not given.
    let other = TlsOptions {
        ca_file: Some(certs.other_ca()),
        ..TlsOptions::default()
    };
    let (redis, ready) = connect(config(server.url(), other), &tasks).await;
    assert!(!ready);
    let error = last_error(&redis);
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(
        error.contains("authority this client does not trust"),
        "{error}"
    );

    // No CA given at all: the system's roots do not know a test CA.
    let (redis, ready) = connect(config(server.url(), TlsOptions::default()), &tasks).await;
    assert!(!ready);
    assert!(
        last_error(&redis).contains("authority this client does not trust"),
        "{}",
        last_error(&redis)
    );

    // A certificate for another name.
    let named = TestCerts::new(&["db.example"]);
    let other_name = tls_server(&named, false).await;
    let url = format!("rediss://localhost:{}/", other_name.port());
    let tls = TlsOptions {
        ca_file: Some(named.ca()),
        ..TlsOptions::default()
    };
    let (redis, ready) = connect(config(url, tls), &tasks).await;
    assert!(!ready);
    let error = last_error(&redis);
    assert!(error.contains("not valid for this host name"), "{error}");
    assert!(
        error.contains(&format!("localhost:{}", other_name.port())),
        "{error}"
    );

    // Development only: no verification at all.
    let insecure = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    let (redis, ready) = connect(config(server.url(), insecure), &tasks).await;
    assert!(ready, "{:?}", redis.health());
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn plain_mistakes_name_the_address_and_the_cause() {
    let tasks = Tasks::new();
    let (redis, ready) = connect(
        config(
            "redis://no-such-host.invalid:6390/".into(),
            TlsOptions::default(),
        ),
        &tasks,
    )
    .await;
    assert!(!ready);
    let error = last_error(&redis);
    assert!(error.starts_with("no-such-host.invalid:6390: "), "{error}");
    assert!(error.contains("does not resolve"), "{error}");

    let nothing = holdfast_testkit::free_port();
    let (redis, _) = connect(
        config(
            format!("redis://127.0.0.1:{nothing}/"),
            TlsOptions::default(),
        ),
        &tasks,
    )
    .await;
    let error = last_error(&redis);
    assert!(error.contains(&format!("127.0.0.1:{nothing}")), "{error}");
    assert!(error.contains("connection refused"), "{error}");

    let server = LocalRedis::start(LocalRedisOptions {
        password: Some("right".into()),
        ..LocalRedisOptions::default()
    })
    .await
    .expect("a redis-server with a password");
    let url = format!("redis://:hunter2@127.0.0.1:{}/", server.port());
    let (redis, ready) = connect(config(url, TlsOptions::default()), &tasks).await;
    assert!(!ready);
    let error = last_error(&redis);
    assert!(error.contains("authentication failed"), "{error}");
    assert!(
        !error.contains("hunter2"),
        "the password stays out: {error}"
    );
    tasks.stop_and_wait(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_start() {
    let unreadable = TlsOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsOptions::default()
    };
    let err = Redis::start(
        config("rediss://127.0.0.1:6390/".into(), unreadable),
        Tasks::new(),
    )
    .expect_err("an unreadable CA file");
    assert!(matches!(err, RedisError::Config(_)));
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let err = Redis::start(
        config("redis//nope".into(), TlsOptions::default()),
        Tasks::new(),
    )
    .expect_err("a malformed URL");
    assert!(matches!(err, RedisError::Config(_)), "{err}");
}
