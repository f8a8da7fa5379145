//! The fault proxy between real clients and a real redis-server: each
//! fault is seen the way a client sees it, on live and new connections,
//! and the HTTP control API drives the same proxies.
//!
//! Timing assertions are lower bounds with margins (a fault must slow
//! things down at least this much) plus generous upper bounds only where
//! "fast again" is the point, so a loaded machine does not make them flaky.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use holdfast_chaos::control::{self, Registry};
use holdfast_chaos::proxy::{Direction, Fault, Proxy};
use holdfast_testkit::LocalRedis;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

fn any_loopback_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A redis-server and a proxy in front of it.
async fn redis_behind_proxy() -> (LocalRedis, Proxy) {
    holdfast_testkit::init_tracing();
    let redis = holdfast_testkit::redis().await;
    let proxy = Proxy::start(
        "redis",
        any_loopback_port(),
        format!("127.0.0.1:{}", redis.port()),
    )
    .await
    .expect("proxy starts");
    (redis, proxy)
}

/// A redis-server, a proxy in front of it, and a connection through the
/// proxy that has answered a `PING`.
async fn redis_behind_proxy_with_a_live_connection() -> (LocalRedis, Proxy, TcpStream) {
    let (redis, proxy) = redis_behind_proxy().await;
    let mut live = connect(&proxy).await;
    timed_ping(&mut live).await;
    (redis, proxy, live)
}

fn url_through(proxy: &Proxy) -> String {
    format!("redis://{}/", proxy.local_addr())
}

/// A redis-server, a proxy in front of it, and a redis client through the
/// proxy, patient enough for slowed-down commands (its default response
/// timeout is shorter than some faults).
async fn redis_behind_proxy_with_a_client() -> (LocalRedis, Proxy, MultiplexedConnection) {
    let (redis, proxy) = redis_behind_proxy().await;
    let mut client = redis::Client::open(url_through(&proxy))
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection through the proxy");
    client.set_response_timeout(PATIENCE);
    (redis, proxy, client)
}

/// `SET key value` through `client`.
async fn set(
    client: &mut MultiplexedConnection,
    key: &str,
    value: impl redis::ToRedisArgs + Send + Sync,
) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(client)
        .await
        .unwrap_or_else(|error| panic!("SET {key}: {error}"));
}

/// `GET key` through `client`.
async fn get<T: redis::FromRedisValue>(client: &mut MultiplexedConnection, key: &str) -> T {
    redis::cmd("GET")
        .arg(key)
        .query_async(client)
        .await
        .unwrap_or_else(|error| panic!("GET {key}: {error}"))
}

async fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect to the proxy");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends an inline `PING` and reads `+PONG`; the error says why not.
async fn ping(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"PING\r\n").await?;
    let mut reply = [0; 7];
    stream.read_exact(&mut reply).await?;
    assert_eq!(&reply, b"+PONG\r\n");
    Ok(())
}

async fn timed_ping(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, ping(stream))
        .await
        .expect("ping answered in time")
        .expect("ping answered");
    started.elapsed()
}

/// Reads until end of stream or an error; `Ok(())` for end of stream.
async fn read_to_close(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buffer = [0; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            if stream.read(&mut buffer).await? == 0 {
                return Ok(());
            }
        }
    })
    .await
    .expect("connection closed in time")
}

fn value_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn without_faults_commands_pass_and_bytes_are_counted() {
    let (_redis, proxy, mut client) = redis_behind_proxy_with_a_client().await;

    let pong: String = redis::cmd("PING").query_async(&mut client).await.unwrap();
    set(&mut client, "greeting", "hello").await;
    let value: String = get(&mut client, "greeting").await;

    assert_eq!(pong, "PONG");
    assert_eq!(value, "hello");
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.active, 1);
    assert!(stats.bytes_upstream > 30, "{stats:?}");
    assert!(stats.bytes_downstream > 10, "{stats:?}");
    assert_eq!((stats.refused, stats.reset), (0, 0));
}

#[tokio::test]
async fn latency_delays_each_way_and_its_removal_speeds_up_the_live_connection() {
    let (_redis, proxy, mut stream) = redis_behind_proxy_with_a_live_connection().await;

    let one_way = proxy.add(Fault::Latency {
        ms: 100,
        jitter_ms: 0,
        direction: Direction::Upstream,
    });
    let with_one_way = timed_ping(&mut stream).await;
    proxy.remove(one_way);
    let both_ways = proxy.add(Fault::Latency {
        ms: 100,
        jitter_ms: 10,
        direction: Direction::Both,
    });
    let with_both_ways = timed_ping(&mut stream).await;
    proxy.remove(both_ways);
    let after_removal = timed_ping(&mut stream).await;

    assert!(
        with_one_way >= Duration::from_millis(100),
        "{with_one_way:?}"
    );
    assert!(
        with_both_ways >= Duration::from_millis(180),
        "{with_both_ways:?}"
    );
    assert!(
        after_removal < Duration::from_millis(80),
        "{after_removal:?}"
    );
    assert_eq!(proxy.stats().accepted, 1, "the same connection throughout");
}

#[tokio::test]
async fn bandwidth_limits_a_large_write() {
    let (_redis, proxy, mut client) = redis_behind_proxy_with_a_client().await;
    let value = value_of(200_000);

    let limit = proxy.add(Fault::Bandwidth {
        bytes_per_sec: 100_000,
        direction: Direction::Upstream,
    });
    let started = Instant::now();
    set(&mut client, "big", &value).await;
    let took = started.elapsed();
    proxy.remove(limit);
    let stored: Vec<u8> = get(&mut client, "big").await;

    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(stored, value);
}

#[tokio::test]
async fn blackhole_holds_live_and_new_connections_until_removed() {
    let (_redis, proxy, mut held) = redis_behind_proxy_with_a_live_connection().await;

    let blackhole = proxy.add(Fault::Blackhole {
        direction: Direction::Both,
    });
    let live_answer = tokio::time::timeout(Duration::from_millis(500), ping(&mut held)).await;
    let mut new_during = connect(&proxy).await;
    let new_answer = tokio::time::timeout(Duration::from_millis(300), ping(&mut new_during)).await;
    proxy.remove(blackhole);
    let mut new_after = connect(&proxy).await;
    timed_ping(&mut new_after).await;

    assert!(live_answer.is_err(), "no answer while blackholed");
    assert!(new_answer.is_err(), "a new connection is accepted but held");
    // The PING sent into the blackhole was held, not dropped: its answer
    // arrives once the fault is gone, and the connection carries on.
    let mut late_reply = [0; 7];
    tokio::time::timeout(PATIENCE, held.read_exact(&mut late_reply))
        .await
        .expect("held ping answered after removal")
        .expect("held connection still open");
    assert_eq!(&late_reply, b"+PONG\r\n");
    timed_ping(&mut held).await;
}

#[tokio::test]
async fn reset_peer_resets_live_and_new_connections_until_removed() {
    let (_redis, proxy, mut live) = redis_behind_proxy_with_a_live_connection().await;

    let reset = proxy.add(Fault::ResetPeer);
    let live_error = read_to_close(&mut live).await.expect_err("reset, not EOF");
    let mut new_during = connect(&proxy).await;
    let new_outcome = tokio::time::timeout(PATIENCE, ping(&mut new_during))
        .await
        .expect("new connection reset in time");
    proxy.remove(reset);
    let mut new_after = connect(&proxy).await;
    timed_ping(&mut new_after).await;

    assert_eq!(live_error.kind(), std::io::ErrorKind::ConnectionReset);
    let new_error = new_outcome.expect_err("new connection fails while reset");
    assert!(
        matches!(
            new_error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{new_error:?}"
    );
    assert_eq!(proxy.stats().reset, 2);
}

#[tokio::test]
async fn close_after_closes_a_connection_once_its_bytes_are_forwarded() {
    let (_redis, proxy) = redis_behind_proxy().await;
    proxy.add(Fault::CloseAfter {
        bytes: 20,
        direction: Direction::Upstream,
    });
    let mut stream = connect(&proxy).await;

    // Three inline PINGs are 18 bytes; the fourth crosses the budget.
    for _ in 0..3 {
        timed_ping(&mut stream).await;
    }
    stream.write_all(b"PING\r\n").await.unwrap();
    let outcome = read_to_close(&mut stream).await;

    assert!(
        outcome.is_ok() || outcome.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "closed without an answer"
    );
    assert_eq!(proxy.stats().bytes_upstream, 20);
}

#[tokio::test]
async fn close_after_counts_from_when_it_is_added_on_a_live_connection() {
    let (_redis, proxy) = redis_behind_proxy().await;
    let mut stream = connect(&proxy).await;
    for _ in 0..5 {
        timed_ping(&mut stream).await;
    }

    proxy.add(Fault::CloseAfter {
        bytes: 7,
        direction: Direction::Downstream,
    });
    timed_ping(&mut stream).await;
    let outcome = read_to_close(&mut stream).await;

    assert!(outcome.is_ok(), "closed after one more +PONG: {outcome:?}");
}

#[tokio::test]
async fn slicing_into_seven_byte_writes_keeps_a_large_value_intact() {
    let (_redis, proxy, mut client) = redis_behind_proxy_with_a_client().await;
    let value = value_of(30_000);

    proxy.add(Fault::Slice {
        max_bytes: 7,
        delay_us: 0,
        direction: Direction::Both,
    });
    set(&mut client, "sliced", &value).await;
    let stored: Vec<u8> = get(&mut client, "sliced").await;

    assert_eq!(stored, value);
}

#[tokio::test]
async fn down_refuses_new_connections_closes_live_ones_and_comes_back_on_the_same_address() {
    let (_redis, proxy, mut live) = redis_behind_proxy_with_a_live_connection().await;
    let address = proxy.local_addr();

    let down = proxy.add(Fault::Down);
    let live_outcome = read_to_close(&mut live).await;
    let refused = async {
        // The listener closes within a scheduler tick of `add`.
        loop {
            match TcpStream::connect(address).await {
                Err(error) => return error,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let refused = tokio::time::timeout(PATIENCE, refused)
        .await
        .expect("refused in time");
    proxy.remove(down);
    let mut after = TcpStream::connect(address)
        .await
        .expect("same address accepts again");

    assert!(
        live_outcome.is_ok(),
        "live connection closed: {live_outcome:?}"
    );
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    timed_ping(&mut after).await;
    assert_eq!(proxy.local_addr(), address);
}

#[tokio::test]
async fn latency_and_bandwidth_compose() {
    let (_redis, proxy, mut client) = redis_behind_proxy_with_a_client().await;
    let value = value_of(50_000);

    proxy.add(Fault::Latency {
        ms: 150,
        jitter_ms: 0,
        direction: Direction::Downstream,
    });
    proxy.add(Fault::Bandwidth {
        bytes_per_sec: 100_000,
        direction: Direction::Upstream,
    });
    let started = Instant::now();
    set(&mut client, "both", &value).await;
    let took = started.elapsed();

    // About 0.5 s of upload plus 150 ms for the reply.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(proxy.faults().len(), 2);
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_listener() {
    let (_redis, proxy, mut live) = redis_behind_proxy_with_a_live_connection().await;
    let address = proxy.local_addr();

    proxy.shutdown().await;

    assert!(read_to_close(&mut live).await.is_ok());
    let error = TcpStream::connect(address)
        .await
        .expect_err("nothing listens");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// `POST url` with `body` as JSON.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url} sent: {error}"))
}

/// `DELETE url`.
async fn delete(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.delete(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("DELETE {url} sent: {error}"))
}

/// The control API on a free port, as a base URL.
async fn spawn_control(registry: Registry) -> String {
    let listener = tokio::net::TcpListener::bind(any_loopback_port())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, control::router(registry)).await });
    format!("http://{address}")
}

#[tokio::test]
async fn the_control_api_creates_a_proxy_adds_and_removes_a_fault_and_deletes_it() {
    holdfast_testkit::init_tracing();
    let redis = holdfast_testkit::redis().await;
    let base = spawn_control(Registry::new()).await;
    let http = reqwest::Client::new();
    let create = serde_json::json!({
        "name": "cache",
        "listen": "127.0.0.1:0",
        "upstream": format!("127.0.0.1:{}", redis.port()),
    });

    let created = post_json(&http, &format!("{base}/proxies"), &create).await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["name"], "cache");
    let listen: SocketAddr = created["listen"].as_str().unwrap().parse().unwrap();
    assert_ne!(listen.port(), 0);

    let again = post_json(&http, &format!("{base}/proxies"), &create).await;
    assert_eq!(again.status(), 409);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["code"], "name_taken");

    let latency = serde_json::json!({"kind": "latency", "ms": 200, "jitter_ms": 50});
    let added = post_json(&http, &format!("{base}/proxies/cache/faults"), &latency).await;
    assert_eq!(added.status(), 201);
    let id = added.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();

    let listed = holdfast_testkit::http::get_json(&http, &format!("{base}/proxies")).await;
    assert_eq!(
        listed[0]["faults"],
        serde_json::json!([{"id": id, "kind": "latency", "ms": 200, "jitter_ms": 50, "direction": "both"}])
    );
    assert!(listed[0]["stats"]["accepted"].is_u64());

    let mut through = TcpStream::connect(listen).await.unwrap();
    let slowed = timed_ping(&mut through).await;
    assert!(slowed >= Duration::from_millis(250), "{slowed:?}");

    let removed = delete(&http, &format!("{base}/proxies/cache/faults/{id}")).await;
    assert_eq!(removed.status(), 204);
    let removed_again = delete(&http, &format!("{base}/proxies/cache/faults/{id}")).await;
    assert_eq!(removed_again.status(), 404);
    assert_eq!(
        removed_again.json::<serde_json::Value>().await.unwrap()["code"],
        "unknown_fault"
    );

    let deleted = delete(&http, &format!("{base}/proxies/cache")).await;
    assert_eq!(deleted.status(), 204);
    let gone = holdfast_testkit::http::get(&http, &format!("{base}/proxies/cache")).await;
    let problem = holdfast_testkit::http::problem(gone, 404, "unknown_proxy").await;
    assert!(
        problem["type"].is_string()
            && problem["title"].is_string()
            && problem["detail"].is_string()
    );
    assert!(
        TcpStream::connect(listen).await.is_err(),
        "deleted proxy stopped"
    );
}

#[tokio::test]
async fn the_control_api_rejects_bad_faults_with_invalid_fault() {
    let base = spawn_control(Registry::new()).await;
    let http = reqwest::Client::new();
    let create = serde_json::json!({
        "name": "nowhere",
        "listen": "127.0.0.1:0",
        "upstream": format!("127.0.0.1:{}", holdfast_testkit::free_port()),
    });
    assert_eq!(
        post_json(&http, &format!("{base}/proxies"), &create)
            .await
            .status(),
        201
    );
    let faults = format!("{base}/proxies/nowhere/faults");

    let add = |body| holdfast_testkit::http::send_json(&http, reqwest::Method::POST, &faults, body);

    let unknown_kind = add(r#"{"kind": "gremlins"}"#).await;
    let not_json = add("{not json").await;
    let zero_rate = add(r#"{"kind": "bandwidth", "bytes_per_sec": 0}"#).await;

    assert_eq!(unknown_kind.status(), 422);
    assert_eq!(not_json.status(), 400);
    assert_eq!(zero_rate.status(), 422);
    for response in [unknown_kind, not_json, zero_rate] {
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_fault");
    }
}

#[tokio::test]
async fn serve_runs_a_default_proxy_and_the_api_until_shut_down() {
    let redis = holdfast_testkit::redis().await;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, holdfast_testkit::free_port()));
    let control_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, holdfast_testkit::free_port()));
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(control::serve(
        listen,
        format!("127.0.0.1:{}", redis.port()),
        control_addr,
        Some("proxy-token".to_owned()),
        shutdown.clone(),
    ));

    let http = reqwest::Client::new();
    let url = format!("http://{control_addr}/proxies/default");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(&url).send().await {
            answer = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view: serde_json::Value = answer.expect("control API up").json().await.unwrap();
    // Reads are open; a change needs the token.
    let faults = format!("http://{control_addr}/proxies/default/faults");
    let without = http.delete(&faults).send().await.unwrap();
    let wrong = http
        .delete(&faults)
        .bearer_auth("proxy-tokem")
        .send()
        .await
        .unwrap();
    let with = http
        .delete(&faults)
        .bearer_auth("proxy-token")
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    assert!(without.headers().contains_key("www-authenticate"));
    assert_eq!(wrong.status(), 401);
    assert_eq!(with.status(), 204);
    let problem: serde_json::Value = without.json().await.unwrap();
    assert_eq!(problem["code"], "unauthorized");
    let mut through = TcpStream::connect(listen).await.unwrap();
    timed_ping(&mut through).await;
    shutdown.cancel();
    let result = tokio::time::timeout(PATIENCE, served).await;

    assert_eq!(view["listen"], listen.to_string());
    assert!(result.expect("serve stopped").unwrap().is_ok());
    assert!(
        read_to_close(&mut through).await.is_ok(),
        "proxied connection closed"
    );
}
