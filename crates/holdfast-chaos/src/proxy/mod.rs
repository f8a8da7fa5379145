//! TCP fault proxy: sits between a client and a server (typically Redis),
//! forwards bytes both ways, and injects network faults on demand.
//!
//! # How the parts fit
//!
//! - [`Proxy::start`] binds the listener and spawns the *accept loop*
//!   (this file). Every accepted connection gets a *connection task*
//!   (`conn`) that dials the upstream and runs two *pumps*, one per
//!   direction, as two futures of that one task.
//! - The current fault set lives in a [`tokio::sync::watch`] channel owned by
//!   the proxy. Pumps consult it once per chunk and `select!` on its change
//!   while waiting, so adding or removing a fault reaches idle, waiting and
//!   busy connections alike (within a scheduler tick, well under 10 ms).
//! - Faults that *end* connections ([`Fault::ResetPeer`], [`Fault::Down`])
//!   are events as well as states: [`Proxy::add`] cancels every live
//!   connection through the registry of live connections, and the accept
//!   loop applies the state to connections that arrive afterwards.
//!
//! # Composition of several faults
//!
//! Faults that apply to a direction compose in this order, per chunk read:
//!
//! 1. [`Fault::Blackhole`]: nothing is read or written in that direction
//!    (data already read stays queued), so the rest does not matter.
//! 2. [`Fault::Latency`]: the delays of every latency fault are **summed**;
//!    a chunk becomes due `delay` after it was read, never before the
//!    chunk ahead of it (order is kept). Reading goes on while chunks wait,
//!    so pipelined traffic is not delayed more than once.
//! 3. [`Fault::CloseAfter`]: the smallest remaining budget wins; exactly
//!    that many bytes are forwarded, then the connection is closed.
//! 4. [`Fault::Slice`] and [`Fault::Bandwidth`] shape the writes: a write
//!    is at most the smallest `max_bytes` (and at most 20 ms worth of the
//!    smallest `bytes_per_sec`), and the next write waits for the longest
//!    of the slice delay and the bandwidth pacing.
//!
//! With no fault in a direction, a pump reads into one 32 KiB buffer and
//! writes it straight out (no queue, no copy).

mod conn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

// The faults a proxy plays live in `crate::faults::network`, next to the
// scenario kind that carries them; here is where the proxy's users look.
pub use crate::faults::network::{Direction, Fault};

/// Backlog of the listening socket.
const LISTEN_BACKLOG: u32 = 1024;

/// How long the accept loop waits after a failed `accept` or re-bind
/// (out of file descriptors, address still busy) before trying again, so
/// that a persistent error does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Identifies one fault added to one proxy; unique for the proxy's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FaultId(pub u64);

impl std::fmt::Display for FaultId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Counters of one proxy since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Bytes forwarded client to server.
    pub bytes_upstream: u64,
    /// Bytes forwarded server to client.
    pub bytes_downstream: u64,
    /// Accepted connections closed at once because the upstream could not
    /// be reached (connection refused, unknown host, ...).
    pub refused: u64,
    /// Connections closed with a TCP RST by [`Fault::ResetPeer`], live or
    /// new.
    pub reset: u64,
}

/// The faults in force, as the watch channel carries them: shared so that
/// each subscriber's snapshot is a reference count, not a copy.
type FaultSet = Arc<Vec<(FaultId, Fault)>>;

/// Counters shared by the accept loop and every connection task.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
}

/// How [`Proxy::add`] reaches one live connection to end it.
struct ConnControl {
    /// Cancelled to end the connection; a child of the proxy's token.
    cancel: CancellationToken,
    /// Set before `cancel` when the client side must be reset, not closed.
    reset: AtomicBool,
}

/// State shared by the handles, the accept loop and the connection tasks.
struct Shared {
    name: String,
    upstream: String,
    local_addr: SocketAddr,
    /// Owned here; every pump and the accept loop hold a receiver. Lives as
    /// long as any task does, so `changed()` never reports a closed channel
    /// while they run.
    faults: watch::Sender<FaultSet>,
    next_fault_id: AtomicU64,
    next_conn_id: AtomicU64,
    counters: Counters,
    /// Live connections, so that reset and down can end them. A connection
    /// task inserts itself at accept and removes itself when it ends.
    conns: Mutex<HashMap<u64, Arc<ConnControl>>>,
    /// A listener bound again by [`Proxy::remove`] when `down` goes away,
    /// so the address accepts (into the backlog) as soon as `remove`
    /// returns; the accept loop takes it from here.
    rebound: Mutex<Option<TcpListener>>,
    /// The runtime the proxy runs on: re-binding registers the socket with
    /// its reactor even when `remove` is called from elsewhere.
    runtime: tokio::runtime::Handle,
    /// Cancelled by [`Proxy::shutdown`] or when the last handle is dropped;
    /// ends the accept loop and (through child tokens) every connection.
    shutdown: CancellationToken,
    /// Every task of this proxy, so `shutdown` can wait for them.
    tasks: TaskTracker,
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single insert, remove or take).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn is_down(faults: &[(FaultId, Fault)]) -> bool {
        faults.iter().any(|(_, fault)| *fault == Fault::Down)
    }

    fn is_reset(faults: &[(FaultId, Fault)]) -> bool {
        faults.iter().any(|(_, fault)| *fault == Fault::ResetPeer)
    }

    /// Ends every live connection, with a client-side RST if `reset`.
    fn end_live_connections(&self, reset: bool) {
        for control in lock(&self.conns).values() {
            if reset {
                control.reset.store(true, Ordering::Release);
            }
            control.cancel.cancel();
        }
    }

    fn bind(&self) -> std::io::Result<TcpListener> {
        let _runtime = self.runtime.enter();
        bind_reusable(self.local_addr)
    }

    /// Accepts connections until shutdown, closing the listener while the
    /// proxy is down and binding it again afterwards.
    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut listener = Some(listener);
        let mut faults = self.faults.subscribe();
        loop {
            let down = Shared::is_down(&faults.borrow_and_update());
            if down {
                // Dropping the listener closes the socket: new connections
                // are refused by the kernel.
                listener = None;
                lock(&self.rebound).take();
            } else if listener.is_none() {
                let taken = lock(&self.rebound).take();
                match taken.map_or_else(|| self.bind(), Ok) {
                    Ok(bound) => listener = Some(bound),
                    Err(error) => {
                        tracing::warn!(proxy = %self.name, %error, "could not bind the listener again; retrying");
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                        }
                    }
                }
            }
            // Wakes on shutdown, on a change of the fault set (down added or
            // removed) and on a new connection.
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                changed = faults.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                accepted = accept(listener.as_ref()) => match accepted {
                    Ok((stream, peer)) => self.on_accept(stream, peer),
                    Err(error) => {
                        tracing::warn!(proxy = %self.name, %error, "accept failed");
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                        }
                    }
                },
            }
        }
    }

    fn on_accept(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(ConnControl {
            cancel: self.shutdown.child_token(),
            reset: AtomicBool::new(false),
        });
        // Registered before the fault set is read: a reset added meanwhile
        // is either seen here or reaches this connection through the
        // registry.
        lock(&self.conns).insert(id, Arc::clone(&control));
        if Shared::is_reset(&self.faults.borrow()) {
            lock(&self.conns).remove(&id);
            reset_now(&stream);
            self.counters.reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(proxy = %self.name, %peer, "accepted");
        let shared = Arc::clone(self);
        self.tasks.spawn(async move {
            conn::run(&shared, stream, &control).await;
            lock(&shared.conns).remove(&id);
            shared.counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// `accept` on the listener, or never when there is none (the proxy is
/// down and waits for the fault set to change).
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Closes `stream` with a TCP RST.
fn reset_now(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "could not set SO_LINGER 0; closing normally");
    }
}

/// Binds with `SO_REUSEADDR`, so that binding the same port again after
/// `down` works even while connections the proxy closed sit in TIME_WAIT.
fn bind_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running fault proxy.
///
/// A cheap, `Clone`-able handle (an `Arc` inside): every clone controls the
/// same proxy. The proxy stops when [`Proxy::shutdown`] is called on any
/// clone, or when the last clone is dropped.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    /// Cancels the proxy's token when the last handle goes; the tasks hold
    /// `shared` only, so they do not keep the proxy alive.
    _stop_on_drop: Arc<DropGuard>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.shared.name)
            .field("local_addr", &self.shared.local_addr)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds `listen` (port 0 = free port) and forwards every accepted
    /// connection to `upstream` (`"host:port"`, resolved at each connect).
    ///
    /// Must be called within a tokio runtime; the proxy's tasks run on it.
    pub async fn start(
        name: impl Into<String>,
        listen: SocketAddr,
        upstream: impl Into<String>,
    ) -> std::io::Result<Proxy> {
        let listener = bind_reusable(listen)?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            name: name.into(),
            upstream: upstream.into(),
            local_addr,
            faults: watch::Sender::new(Arc::new(Vec::new())),
            next_fault_id: AtomicU64::new(1),
            next_conn_id: AtomicU64::new(0),
            counters: Counters::default(),
            conns: Mutex::new(HashMap::new()),
            rebound: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
        });
        tracing::info!(proxy = %shared.name, listen = %local_addr, upstream = %shared.upstream, "fault proxy started");
        shared
            .tasks
            .spawn(Arc::clone(&shared).accept_loop(listener));
        Ok(Proxy {
            shared,
            _stop_on_drop: Arc::new(shutdown.drop_guard()),
        })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the proxy listens on (with the actual port if 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Where connections are forwarded to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Adds a fault; it takes effect on live connections too, within a few
    /// milliseconds ([`Fault::ResetPeer`] and [`Fault::Down`] end the live
    /// connections before this returns control to the runtime).
    pub fn add(&self, fault: Fault) -> FaultId {
        let id = FaultId(self.shared.next_fault_id.fetch_add(1, Ordering::Relaxed));
        let ends_connections = match fault {
            Fault::ResetPeer => Some(true),
            Fault::Down => Some(false),
            _ => None,
        };
        tracing::info!(proxy = %self.shared.name, %id, ?fault, "fault added");
        self.shared
            .faults
            .send_modify(|faults| Arc::make_mut(faults).push((id, fault)));
        if let Some(reset) = ends_connections {
            if !reset {
                lock(&self.shared.rebound).take();
            }
            self.shared.end_live_connections(reset);
        }
        id
    }

    /// Removes a fault; `false` if there is none with this id. Takes effect
    /// on live connections too. Removing the last [`Fault::Down`] binds the
    /// address again before returning (or, if that fails, the accept loop
    /// keeps trying).
    pub fn remove(&self, id: FaultId) -> bool {
        let mut removed = false;
        let mut was_down = false;
        self.shared.faults.send_if_modified(|faults| {
            was_down = Shared::is_down(faults);
            if let Some(index) = faults.iter().position(|(fault_id, _)| *fault_id == id) {
                Arc::make_mut(faults).remove(index);
                removed = true;
            }
            removed
        });
        if removed {
            tracing::info!(proxy = %self.shared.name, %id, "fault removed");
            self.rebind_if_up(was_down);
        }
        removed
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let mut was_down = false;
        self.shared.faults.send_if_modified(|faults| {
            was_down = Shared::is_down(faults);
            if faults.is_empty() {
                return false;
            }
            *faults = Arc::new(Vec::new());
            true
        });
        tracing::info!(proxy = %self.shared.name, "faults cleared");
        self.rebind_if_up(was_down);
    }

    /// After a removal: if the proxy was down and no longer is, binds the
    /// listening address again at once. Failure (the accept loop has not
    /// closed the old socket yet) is left to the accept loop, which binds
    /// it itself.
    fn rebind_if_up(&self, was_down: bool) {
        if !was_down || Shared::is_down(&self.shared.faults.borrow()) {
            return;
        }
        if let Ok(listener) = self.shared.bind() {
            *lock(&self.shared.rebound) = Some(listener);
        }
    }

    /// The faults in force, in the order they were added.
    pub fn faults(&self) -> Vec<(FaultId, Fault)> {
        self.shared.faults.borrow().as_ref().clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> ProxyStats {
        let counters = &self.shared.counters;
        ProxyStats {
            accepted: counters.accepted.load(Ordering::Relaxed),
            active: counters.active.load(Ordering::Relaxed),
            bytes_upstream: counters.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: counters.bytes_downstream.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            reset: counters.reset.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, closes every connection (normally, with a FIN) and
    /// waits until every task of the proxy has ended. Other clones of the
    /// handle then see a stopped proxy.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        lock(&self.shared.rebound).take();
        tracing::info!(proxy = %self.shared.name, "fault proxy stopped");
    }
}
