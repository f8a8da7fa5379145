//! A private `redis-server` child process on a free loopback port.
//!
//! [`LocalRedis`] is what `holdfast up` runs when no `REDIS_URL` is given, and
//! what every integration test connects to: each test gets its own server, on
//! a port the kernel handed out, with its data in its own temporary
//! directory. Nothing here ever touches a Redis on the default port 6379, so
//! tests cannot read or wipe a developer's data and can run in parallel.
//!
//! The parts fit together like this:
//! - [`LocalRedis::start`] picks a free port, spawns `redis-server` with its
//!   data and log in a fresh [`tempfile::TempDir`], and returns once that
//!   very process (checked by its pid, not just "something on the port")
//!   answers `PING`.
//! - [`LocalRedis::kill9`], [`LocalRedis::stop`] and [`LocalRedis::restart`]
//!   let tests break the server the way production breaks it: a crash keeps
//!   the directory, so with `appendonly` on, a restart on the same port
//!   reloads what was written.
//! - Dropping a [`LocalRedis`] kills the process and reaps it, then removes
//!   the directory (the `TempDir`). The child is also spawned with
//!   `kill_on_drop`, so it cannot outlive a `LocalRedis` that is leaked
//!   half-way through a start.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// How often readiness and exit are polled while waiting for the server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a freshly spawned server gets to answer `PING`. Loading a small
/// AOF takes milliseconds; the margin is for slow, busy CI machines.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many fresh ports [`LocalRedis::start`] tries. Between picking a port
/// and `redis-server` binding it, another process may take it.
const START_ATTEMPTS: usize = 5;
/// How long [`LocalRedis::restart`] keeps retrying its fixed port when the
/// bind fails (a previous process not yet fully gone, or a brief squatter).
const RESTART_BIND_PATIENCE: Duration = Duration::from_secs(3);
/// Pause between two attempts to bind the same port on restart.
const RESTART_BIND_BACKOFF: Duration = Duration::from_millis(100);
/// How long a graceful stop waits for the process to exit before killing it.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Connect timeout for the short-lived control connections made here.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Response timeout for the short-lived control connections made here.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long dropping a [`LocalRedis`] waits for the killed process to exit.
const DROP_REAP_PATIENCE: Duration = Duration::from_millis(500);
/// How often dropping a [`LocalRedis`] checks whether the process exited.
const DROP_REAP_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How many lines of `redis.log` an error quotes.
const LOG_TAIL_LINES: usize = 20;
/// The binary looked up on `PATH` when [`LocalRedisOptions::binary`] is `None`.
const DEFAULT_BINARY: &str = "redis-server";
/// Name of the log file inside [`LocalRedis::dir`].
const LOG_FILE: &str = "redis.log";
/// Where the server's stderr goes, inside [`LocalRedis::dir`]. Once the log
/// file is configured nothing is written there, but a rejected option is
/// reported on stderr only, and an error should say which option it was.
const STDERR_FILE: &str = "redis-stderr.log";

/// How to run the server. `Default` is an in-memory server: no persistence,
/// no password, `redis-server` from `PATH`.
#[derive(Clone, Default)]
pub struct LocalRedisOptions {
    /// Run with `appendonly yes`, so that data survives [`LocalRedis::kill9`]
    /// followed by [`LocalRedis::restart`].
    pub aof: bool,
    /// `appendfsync` policy: `"always"` (nothing acknowledged is lost on a
    /// crash) or `"everysec"`. `None` keeps the server's default.
    pub appendfsync: Option<String>,
    /// `requirepass`: clients must authenticate with this password.
    pub password: Option<String>,
    /// More arguments, passed to `redis-server` after the ones set here
    /// (for example `["--maxmemory", "10mb"]`).
    pub extra_args: Vec<String>,
    /// The `redis-server` to run; `None` means `redis-server` on `PATH`.
    pub binary: Option<PathBuf>,
    /// Serve TLS only (on the same port), with these files.
    pub tls: Option<LocalTls>,
    /// Start it in a process group of its own, so that a Ctrl-C in the
    /// terminal does not reach it: its owner stops it, last (`holdfast up`,
    /// whose roles drain against it).
    pub own_process_group: bool,
}

// Hand-written so that a password never ends up in test output or logs.
impl fmt::Debug for LocalRedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRedisOptions")
            .field("aof", &self.aof)
            .field("appendfsync", &self.appendfsync)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("extra_args", &self.extra_args)
            .field("binary", &self.binary)
            .field("tls", &self.tls.is_some())
            .field("own_process_group", &self.own_process_group)
            .finish()
    }
}

/// The files of a TLS server, PEM.
#[derive(Clone, Debug)]
pub struct LocalTls {
    /// The server's certificate.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The CA that signed it (and the client certificates it accepts).
    pub ca_file: PathBuf,
    /// Clients must present a certificate signed by `ca_file`; the
    /// handle's own connections then use `client`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Why a [`LocalRedis`] could not be started, restarted or talked to.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// The `redis-server` binary does not exist. Not retryable.
    #[error("{} not found on PATH; install it (apt-get install -y redis-server)", binary.display())]
    BinaryNotFound {
        /// The binary that was looked for.
        binary: PathBuf,
    },
    /// Spawning the process failed for another reason (permissions, limits).
    #[error("could not spawn {}: {source}", binary.display())]
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// No temporary directory, no free port, or the child could not be polled.
    #[error("local redis setup failed: {0}")]
    Io(#[from] io::Error),
    /// The server could not bind its port: someone else holds it.
    #[error("redis-server could not listen on 127.0.0.1:{port}; its output ends with:\n{log_tail}")]
    PortInUse {
        /// The port that was taken.
        port: u16,
        /// The last lines the server wrote to stderr and its log.
        log_tail: String,
    },
    /// The server exited before it answered `PING`.
    #[error(
        "redis-server on port {port} exited early ({status}); its output ends with:\n{log_tail}"
    )]
    ExitedEarly {
        /// The port it was started on.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// The last lines the server wrote to stderr and its log.
        log_tail: String,
    },
    /// The server kept running but did not answer `PING` in time; it has
    /// been killed.
    #[error(
        "redis-server on port {port} did not answer PING within {waited:?}; its output ends with:\n{log_tail}"
    )]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// How long it was given.
        waited: Duration,
        /// The last lines the server wrote to stderr and its log.
        log_tail: String,
    },
    /// A topology of several servers (Sentinel, Cluster) did not come
    /// together.
    #[error("local redis topology: {what}")]
    Topology {
        /// What did not happen.
        what: String,
    },
    /// A command sent to the running server failed.
    #[error("{command} on local redis failed: {source}")]
    Command {
        /// The command, without its arguments (which may hold a password).
        command: &'static str,
        /// What the client or the server said.
        #[source]
        source: redis::RedisError,
    },
}

impl LocalRedisError {
    /// Whether trying again may help: a busy port, a slow machine or a
    /// dropped connection may; a missing binary or a rejected option will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::PortInUse { .. } | Self::NotReady { .. } => true,
            Self::Command { source, .. } => {
                source.is_io_error() || source.is_timeout() || source.is_connection_dropped()
            }
            Self::BinaryNotFound { .. }
            | Self::Topology { .. }
            | Self::Spawn { .. }
            | Self::Io(_)
            | Self::ExitedEarly { .. } => false,
        }
    }
}

/// A `redis-server` child process on `127.0.0.1`, with its own directory.
///
/// Owns the process and the directory: dropping it kills the process and
/// deletes the directory.
pub struct LocalRedis {
    options: LocalRedisOptions,
    /// The password the server currently requires. Starts as
    /// `options.password` and follows `CONFIG SET requirepass` made through
    /// [`LocalRedis::config_set`], so that [`LocalRedis::url`], `stop` and
    /// `restart` keep working after a test changes it. Only locked for
    /// reads and writes of the value, never across an `.await`.
    password: Mutex<Option<String>>,
    port: u16,
    /// `None` after `kill9` or `stop`, until `restart`. Declared before
    /// `dir` so that, in drop order too, the process dies before its
    /// directory is removed.
    child: Option<Child>,
    dir: TempDir,
}

impl Drop for LocalRedis {
    /// Kills the process and waits briefly for it to exit, so that when the
    /// drop returns the process is gone rather than a zombie. `kill_on_drop`
    /// alone would kill it but leave the reaping to the tokio runtime, which
    /// at the end of a test is shutting down. Blocks for the few
    /// milliseconds a SIGKILL takes; [`LocalRedis::stop`] is the async way.
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        // Fails only if the process already exited, which is what is wanted.
        let _ = child.start_kill();
        let give_up_at = std::time::Instant::now() + DROP_REAP_PATIENCE;
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < give_up_at {
            std::thread::sleep(DROP_REAP_POLL_INTERVAL);
        }
    }
}

impl fmt::Debug for LocalRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRedis")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .field("options", &self.options)
            .finish()
    }
}

impl LocalRedis {
    /// Starts a server on a free loopback port and waits until it answers
    /// `PING`.
    ///
    /// If the port is taken between choosing it and the server binding it,
    /// another port is tried, a few times.
    pub async fn start(options: LocalRedisOptions) -> Result<LocalRedis, LocalRedisError> {
        let dir = tempfile::Builder::new()
            .prefix("holdfast-redis-")
            .tempdir()?;
        let mut redis = LocalRedis {
            password: Mutex::new(options.password.clone()),
            options,
            port: 0,
            child: None,
            dir,
        };
        let mut attempt = 1;
        loop {
            redis.port = free_loopback_port()?;
            match redis.launch().await {
                Err(LocalRedisError::PortInUse { port, .. }) if attempt < START_ATTEMPTS => {
                    tracing::debug!(port, attempt, "local redis port was taken; trying another");
                    attempt += 1;
                }
                Err(error) => return Err(error),
                Ok(()) => return Ok(redis),
            }
        }
    }

    /// The port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for the redis crate: `redis://127.0.0.1:PORT/`, or
    /// `redis://:PASSWORD@127.0.0.1:PORT/` while a password is required;
    /// `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match self.current_password() {
            Some(password) => format!(
                "{scheme}://:{}@127.0.0.1:{}/",
                percent_encode_userinfo(&password),
                self.port
            ),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    /// The server's working directory: its AOF files and `redis.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the running server; `None` after `kill9` or `stop`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the server has exited since it was started, without being
    /// stopped or killed through this handle (someone killed it by hand, or
    /// it crashed): how it ended, once. It then counts as stopped, and
    /// [`restart`](LocalRedis::restart) starts it again.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Kills the server with SIGKILL, like a crash or the OOM killer, and
    /// waits until it is gone. The directory is kept, so [`restart`]
    /// reloads whatever the AOF holds.
    ///
    /// [`restart`]: LocalRedis::restart
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child).await;
        }
    }

    /// Stops the server gracefully: `SHUTDOWN NOSAVE` (the AOF, if on, is
    /// still flushed), then up to 2 s to exit, then SIGKILL.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The server closes the connection as it shuts down, so an error
        // here is the expected answer; a real failure shows up as the
        // process not exiting, which the kill below handles.
        let _ = timeout(RESPONSE_TIMEOUT, async {
            let mut connection = self.connect().await?;
            redis::cmd("SHUTDOWN")
                .arg("NOSAVE")
                .query_async::<()>(&mut connection)
                .await
        })
        .await;
        if timeout(STOP_GRACE, child.wait()).await.is_err() {
            tracing::warn!(port = self.port, "local redis ignored SHUTDOWN; killing it");
            kill_and_reap(&mut child).await;
        }
    }

    /// Starts the server again on the same port and in the same directory,
    /// so that with `aof` on its data is reloaded; waits for `PING`.
    ///
    /// Works after [`kill9`](LocalRedis::kill9) or [`stop`](LocalRedis::stop);
    /// a server that is still running is stopped gracefully first. A
    /// password changed through [`config_set`](LocalRedis::config_set) is
    /// kept. If the port cannot be bound, binding is retried for a few
    /// seconds.
    pub async fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.stop().await;
        let give_up_at = Instant::now() + RESTART_BIND_PATIENCE;
        loop {
            match self.launch().await {
                Err(LocalRedisError::PortInUse { port, .. }) if Instant::now() < give_up_at => {
                    tracing::debug!(port, "local redis port still busy on restart; retrying");
                    sleep(RESTART_BIND_BACKOFF).await;
                }
                result => return result,
            }
        }
    }

    /// Runs `CONFIG SET key value` on the running server through a
    /// short-lived connection (tests use it to change `requirepass` under
    /// a running service).
    ///
    /// Setting `requirepass` also changes the password [`url`] carries from
    /// then on; an empty value means no password.
    ///
    /// [`url`]: LocalRedis::url
    pub async fn config_set(&self, key: &str, value: &str) -> Result<(), LocalRedisError> {
        let command_failed = |source| LocalRedisError::Command {
            command: "CONFIG SET",
            source,
        };
        let mut connection = self.connect().await.map_err(command_failed)?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut connection)
            .await
            .map_err(command_failed)?;
        if key.eq_ignore_ascii_case("requirepass") {
            let new_password = (!value.is_empty()).then(|| value.to_owned());
            *self.password.lock().unwrap_or_else(PoisonError::into_inner) = new_password;
        }
        Ok(())
    }

    fn current_password(&self) -> Option<String> {
        self.password
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Where the server's output files end now, before a launch.
    fn output_mark(&self) -> OutputMark {
        let length =
            |name| std::fs::metadata(self.dir.path().join(name)).map_or(0, |meta| meta.len());
        OutputMark {
            log: length(LOG_FILE),
            stderr: length(STDERR_FILE),
        }
    }

    /// The last lines of stderr and of the log written since `mark`: the
    /// files are shared by every run in this directory, and only what this
    /// run wrote explains how this run failed.
    fn output_since(&self, mark: &OutputMark) -> String {
        let stderr = read_tail(&self.dir.path().join(STDERR_FILE), mark.stderr);
        let log = read_tail(&self.log_path(), mark.log);
        match (stderr, log) {
            (None, None) => "(the server wrote nothing)".to_owned(),
            (Some(only), None) | (None, Some(only)) => only,
            (Some(stderr), Some(log)) => format!("{stderr}\n{log}"),
        }
    }

    fn binary(&self) -> PathBuf {
        self.options
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY))
    }

    fn server_args(&self) -> Vec<String> {
        let (port, tls_port) = match &self.options.tls {
            Some(_) => ("0".to_owned(), Some(self.port.to_string())),
            None => (self.port.to_string(), None),
        };
        let mut args: Vec<String> = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--dir",
            &self.dir.path().to_string_lossy(),
            "--save",
            "",
            "--appendonly",
            if self.options.aof { "yes" } else { "no" },
            "--daemonize",
            "no",
            "--logfile",
            &self.log_path().to_string_lossy(),
        ]
        .map(String::from)
        .into();
        if let Some(policy) = &self.options.appendfsync {
            args.extend(["--appendfsync".to_owned(), policy.clone()]);
        }
        if let (Some(tls), Some(port)) = (&self.options.tls, tls_port) {
            let path = |p: &PathBuf| p.to_string_lossy().into_owned();
            args.extend([
                "--tls-port".to_owned(),
                port,
                "--tls-cert-file".to_owned(),
                path(&tls.cert_file),
                "--tls-key-file".to_owned(),
                path(&tls.key_file),
                "--tls-ca-cert-file".to_owned(),
                path(&tls.ca_file),
                "--tls-auth-clients".to_owned(),
                if tls.client.is_some() { "yes" } else { "no" }.to_owned(),
            ]);
        }
        if let Some(password) = self.current_password() {
            args.extend(["--requirepass".to_owned(), password]);
        }
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    /// Spawns the server on `self.port` and waits until it answers `PING`.
    async fn launch(&mut self) -> Result<(), LocalRedisError> {
        let output_mark = self.output_mark();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(STDERR_FILE))?;
        let binary = self.binary();
        let mut command = Command::new(&binary);
        if self.options.own_process_group {
            command.process_group(0);
        }
        let child = command
            .args(self.server_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => LocalRedisError::BinaryNotFound {
                    binary: binary.clone(),
                },
                _ => LocalRedisError::Spawn {
                    binary: binary.clone(),
                    source,
                },
            })?;
        let pid = child.id();
        // Owned by `self` from here on, so that if this future is dropped
        // half-way the process still dies with the `LocalRedis`.
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let log_tail = self.output_since(&output_mark);
                return Err(if is_bind_failure(&log_tail) {
                    LocalRedisError::PortInUse {
                        port: self.port,
                        log_tail,
                    }
                } else {
                    LocalRedisError::ExitedEarly {
                        port: self.port,
                        status,
                        log_tail,
                    }
                });
            }
            if let Some(pid) = pid
                && self.answers_ping_as(pid).await
            {
                tracing::debug!(port = self.port, pid, "local redis is up");
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9().await;
                return Err(LocalRedisError::NotReady {
                    port: self.port,
                    waited: READY_TIMEOUT,
                    log_tail: self.output_since(&output_mark),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Whether the server on our port is the process `pid` and answers
    /// `PING`. The pid check matters: right after a port is chosen, some
    /// other server may be answering on it while ours is failing to bind.
    async fn answers_ping_as(&self, pid: u32) -> bool {
        let Ok(mut connection) = self.connect().await else {
            return false;
        };
        let Ok(info) = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut connection)
            .await
        else {
            return false;
        };
        let server_pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|value| value.trim().parse::<u32>().ok());
        if server_pid != Some(pid) {
            return false;
        }
        // Unlike INFO, PING is refused with LOADING while the AOF loads.
        matches!(
            redis::cmd("PING").query_async::<String>(&mut connection).await,
            Ok(reply) if reply == "PONG"
        )
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = match &self.options.tls {
            None => redis::Client::open(self.url())?,
            Some(tls) => {
                crate::connect::install_crypto_provider();
                let read = |path: &PathBuf| std::fs::read(path).map_err(redis::RedisError::from);
                let client_tls = match &tls.client {
                    Some((cert, key)) => Some(redis::ClientTlsConfig {
                        client_cert: read(cert)?,
                        client_key: read(key)?,
                    }),
                    None => None,
                };
                redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls,
                        root_cert: Some(read(&tls.ca_file)?),
                    },
                )?
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Asks the kernel for a free port on 127.0.0.1. The listener is closed
/// before returning, so the port is only very probably still free.
pub(crate) fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

async fn kill_and_reap(child: &mut Child) {
    // Both fail only if the process is already gone and reaped, which is
    // the state wanted here.
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Failed listening on port")
}

/// Byte lengths of the server's output files at one moment.
struct OutputMark {
    log: u64,
    stderr: u64,
}

/// The last lines written to `path` after byte `offset`, if any.
fn read_tail(path: &Path, offset: u64) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    (!tail.is_empty()).then(|| tail.join("\n"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any
/// password fits in the userinfo part of a URL.
fn percent_encode_userinfo(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_with_url_delimiters_is_percent_encoded() {
        assert_eq!(percent_encode_userinfo("a@b:c/d%e"), "a%40b%3Ac%2Fd%25e");
        assert_eq!(percent_encode_userinfo("plain-pass_1.~"), "plain-pass_1.~");
    }

    #[test]
    fn a_bind_failure_is_recognised_in_the_log() {
        let log = "# Warning: Could not create server TCP listening socket 127.0.0.1:7000: bind: Address already in use\n# Failed listening on port 7000 (tcp), aborting.";
        assert!(is_bind_failure(log));
        assert!(!is_bind_failure("# Server initialized"));
    }

    #[test]
    fn the_log_tail_only_covers_this_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, "old run failed\n").expect("write");
        let offset = std::fs::metadata(&path).expect("metadata").len();
        std::fs::write(&path, "old run failed\nnew run line\n").expect("write");
        assert_eq!(read_tail(&path, offset).as_deref(), Some("new run line"));
    }
}
