//! Every listener bounds its connections: a declared body over the limit
//! is refused before it is read, a short body times out, half-sent headers
//! and idle keep-alive connections are closed, and connections beyond the
//! cap are refused, while the clients already connected are served.

use std::time::{Duration, Instant};

use holdfast_testkit::roles::ingress::{NEW_YORK, TestIngress, spawn_ingress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The ingress with short connection limits.
async fn ingress(max_connections: usize) -> TestIngress {
    ingress_with(max_connections, Duration::from_millis(600)).await
}

async fn ingress_with(max_connections: usize, header_timeout: Duration) -> TestIngress {
    spawn_ingress(|s| {
        s.stack.header_timeout = header_timeout;
        s.stack.body_timeout = Duration::from_millis(400);
        s.stack.max_connections = max_connections;
    })
    .await
}

fn address(app: &TestIngress) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection, or what
/// came within `limit`; and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_any_of_it_is_sent() {
    let app = ingress(64).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /WeatherForecast/city HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999\r\n\r\n",
        )
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
}

#[tokio::test]
async fn a_body_shorter_than_its_length_gets_408_within_the_body_timeout() {
    let app = ingress(64).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /WeatherForecast/city HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"city\":",
        )
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn half_sent_headers_and_idle_keep_alive_connections_are_closed() {
    let app = ingress(64).await;
    // Half a request line, then nothing.
    let mut half = TcpStream::connect(address(&app)).await.unwrap();
    half.write_all(b"GET /health/live HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // A whole request on a kept-alive connection, then nothing.
    let mut idle = TcpStream::connect(address(&app)).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // A connection that sends nothing at all.
    let mut silent = TcpStream::connect(address(&app)).await.unwrap();
    let (half_seen, half_took) = read_until_closed(&mut half, Duration::from_secs(5)).await;
    let (_, silent_took) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        silent_took < Duration::from_secs(2),
        "a silent connection stayed open for {silent_took:?}"
    );
    let (idle_seen, idle_took) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        half_took < Duration::from_secs(2),
        "half-sent headers held the connection for {half_took:?}: {half_seen}"
    );
    assert!(idle_seen.starts_with("HTTP/1.1 200"), "{idle_seen}");
    assert!(
        idle_took < Duration::from_secs(2),
        "an idle connection stayed open for {idle_took:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_connected_clients_are_still_served() {
    let _heavy = crate::HEAVY.lock().await;
    // A header timeout longer than the flood takes to open, so that the
    // cap, not the timeout, is what meets it.
    let app = ingress_with(1000, Duration::from_secs(3)).await;
    app.spawn_worker().await;
    // An ordinary client, connected before the flood (one kept-alive
    // connection of reqwest's pool).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let call = || {
        client
            .post(app.url("/WeatherForecast/city"))
            .header("content-type", "application/json")
            .body(NEW_YORK)
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    let fds_before = open_fds();

    // 5,000 connections that send half a request and stay.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..5000 {
        let Ok(mut stream) = TcpStream::connect(address(&app)).await else {
            continue;
        };
        if stream
            .write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
            .await
            .is_err()
        {
            refused += 1;
            continue;
        }
        flood.push(stream);
    }
    // Meanwhile the connected client is served at once.
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        assert_eq!(call().await.unwrap().status(), 200);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[98];
    // The listener holds no more than its cap: the test's own 5,000
    // sockets, plus at most 1,000 accepted ones, plus a little.
    let grown = open_fds().saturating_sub(fds_before);
    let mut answers = 0;
    for stream in flood.iter_mut().skip(1100).take(200) {
        let (seen, _) = read_until_closed(stream, Duration::from_millis(50)).await;
        if seen.starts_with("HTTP/1.1 503") && seen.contains("too_many_connections") {
            answers += 1;
        }
    }
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?} during the flood"
    );
    assert!(grown <= 5000 + 1000 + 100, "{grown} more file descriptors");
    assert!(
        answers + refused > 0,
        "no connection beyond the cap was refused"
    );
    // Once the flood is gone, new clients connect.
    drop(flood);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = reqwest::Client::new();
    let resp = fresh.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// File descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}
