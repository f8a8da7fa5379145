//! `holdfast probe URL`, the image's health check, as a container runtime
//! runs it: exit 0 on a 2xx answer, 1 with the reason otherwise.

use std::net::TcpListener;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn holdfast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .env_remove("HOLDFAST_PROBE_URL")
        .output()
        .expect("run holdfast")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `holdfast load-target`, a server that answers any status asked for.
struct Target(Child, u16);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target() -> Target {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["load-target", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the load target");
    let give_up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < give_up, "the load target did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Target(child, port)
}

#[test]
fn a_2xx_passes_and_anything_else_fails_with_the_reason() {
    let target = target();
    let base = format!("http://127.0.0.1:{}", target.1);

    let ok = holdfast(&["probe", &format!("{base}/")]);
    assert!(ok.status.success(), "{ok:?}");

    let unhealthy = holdfast(&["probe", &format!("{base}/status/503")]);
    assert_eq!(unhealthy.status.code(), Some(1));
    let why = String::from_utf8_lossy(&unhealthy.stderr);
    assert!(why.contains("503"), "{why}");

    let slow = holdfast(&["probe", "--timeout", "200ms", &format!("{base}/delay/2000")]);
    assert_eq!(slow.status.code(), Some(1));
    let why = String::from_utf8_lossy(&slow.stderr);
    assert!(why.contains("no answer within"), "{why}");

    let closed = holdfast(&[
        "probe",
        &format!("http://127.0.0.1:{}/health/live", free_port()),
    ]);
    assert_eq!(closed.status.code(), Some(1));
    let why = String::from_utf8_lossy(&closed.stderr);
    assert!(why.contains("health/live: could not connect"), "{why}");
}
