//! Addresses for tests of what a client does when its server is missing:
//! a port nothing listens on, and a server that accepts and never answers.

use std::net::{Ipv4Addr, TcpListener};

use tokio::task::JoinHandle;

/// A port on 127.0.0.1 that was free a moment ago (the kernel picked it
/// and the listener is closed again), for tests that need an address
/// nothing listens on, or must bind one themselves.
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|error| panic!("could not bind a free port on 127.0.0.1: {error}"));
    listener
        .local_addr()
        .unwrap_or_else(|error| panic!("bound listener has no local address: {error}"))
        .port()
}

/// A server on 127.0.0.1 that accepts connections and never says a word,
/// like a host whose process is stopped (SIGSTOP) or a black-holing proxy.
/// Dropping it stops the server and closes what it accepted.
pub struct SilentServer {
    port: u16,
    /// Accepts and keeps every socket open; aborted on drop.
    task: JoinHandle<()>,
}

impl SilentServer {
    /// Starts a silent server on a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> SilentServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentServer { port, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
