//! The stack that `holdfast up` runs and a chaos scenario runs against: a
//! private redis-server (or a Redis given by URL), fault proxies where
//! faults must be playable, and the holdfast roles as child processes of
//! the `holdfast` binary (workers, ingress, api, and for `up` the exporter
//! and the dashboard), each with its log in the stack's directory.
//!
//! A scenario's stack takes free loopback ports ([`StackLayout::free`]);
//! `up` gives fixed ones. [`crate::supervisor`] restarts a role that dies
//! when nobody meant it to.
//!
//! The stack says what each role runs with in typed form ([`RoleLaunch`]);
//! the binary, through [`RoleCommandLine`], writes that as its own command
//! line from the same argument types its parser reads, so the flags a role
//! is started with cannot drift from the flags it accepts.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use holdfast_redis::local::{LocalRedis, LocalRedisOptions};
use holdfast_redis::local_topology::{LocalCluster, LocalSentinel};
use tokio::process::{Child, Command};

use crate::proxy::Proxy;
use crate::scenario::{Durability, StackSpec, Topology};

/// Longest wait for a role to answer `/health/ready` at start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping worker of the stack finishes what it holds: short,
/// since a scenario stops its stack only after the load has ended.
const WORKER_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Grace between SIGTERM and SIGKILL when the stack stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The PostgreSQL a `database = "postgres"` scenario uses when
/// `HOLDFAST_CHAOS_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The MySQL or MariaDB a `database = "mysql"` scenario uses when
/// `HOLDFAST_CHAOS_MYSQL_URL` is not set.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// What a role process of the stack runs with, in typed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleLaunch {
    /// A stream worker.
    Worker(WorkerLaunch),
    /// The HTTP ingress.
    Ingress(IngressLaunch),
    /// The cached api.
    Api(ApiLaunch),
    /// The metrics exporter.
    Exporter(ExporterLaunch),
    /// The dashboard.
    Dashboard(DashboardLaunch),
}

/// How a role's metrics reach Redis (`None` in a launch: the role's
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleMetrics {
    /// How often it adds its metrics to the aggregates in Redis.
    pub flush_interval: Duration,
    /// `false` keeps its metrics out of Redis.
    pub sink: bool,
}

/// The Redis a role talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRedis {
    /// Redis (or the proxy in front of it).
    pub url: String,
    /// `false` runs the role without Redis (`REDIS_ENABLED=false`).
    pub enabled: bool,
    /// Partitions of every topic (callers and workers must agree).
    pub partitions: u16,
}

/// A worker of the stack; what is not named keeps the role's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLaunch {
    /// Its Redis.
    pub redis: RoleRedis,
    /// Its metrics sink.
    pub metrics: Option<RoleMetrics>,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its consumer name, kept across restarts so it finds its own pending
    /// entries.
    pub consumer_name: String,
    /// How long before an idle entry is claimed.
    pub claim_timeout: Duration,
    /// The weather handler's simulated work.
    pub processing_time: Duration,
    /// How long a stopping worker finishes what it holds.
    pub drain_timeout: Duration,
}

/// The ingress of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressLaunch {
    /// Its Redis.
    pub redis: RoleRedis,
    /// Durability of every request that names none.
    pub durability: holdfast_core::Durability,
    /// Its metrics sink.
    pub metrics: Option<RoleMetrics>,
    /// The public listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

/// The api of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLaunch {
    /// Its Redis.
    pub redis: RoleRedis,
    /// Its metrics sink.
    pub metrics: Option<RoleMetrics>,
    /// The public listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its database (or the proxy in front of it).
    pub database_url: String,
    /// How long a cached value is fresh.
    pub cache_ttl: Duration,
    /// Artificial delay of product reads from the database (`None`: the
    /// role's default).
    pub products_db_delay: Option<Duration>,
}

/// The exporter of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterLaunch {
    /// Its Redis.
    pub redis: RoleRedis,
    /// Its listener (`/metrics`, `/health*`, `/logs`).
    pub listen: SocketAddr,
}

/// The dashboard of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardLaunch {
    /// Its Redis.
    pub redis: RoleRedis,
    /// Its listener.
    pub listen: SocketAddr,
    /// The stack's control API, when the dashboard may play faults. The
    /// token goes to the process in its environment
    /// ([`DASHBOARD_TOKEN_ENV`]), never on its command line, where any
    /// user of the machine could read it.
    pub control_url: Option<String>,
}

/// The environment variable the dashboard reads its control token from.
pub const DASHBOARD_TOKEN_ENV: &str = "HOLDFAST_DASHBOARD_TOKEN";

/// The environment variable that tells a role which process started it;
/// the role stops when that process is gone.
pub const PARENT_PID_ENV: &str = "HOLDFAST_PARENT_PID";

/// Where the stack's Redis comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSource {
    /// A redis-server of the stack's own, in the stack's directory.
    Private,
    /// A Redis given by URL (`REDIS_URL`); the Redis faults cannot touch it.
    External(String),
    /// No Redis at all: every role runs with `REDIS_ENABLED=false`.
    Disabled,
}

/// Where the roles listen, which optional roles run, and where Redis comes
/// from. A port of 0 takes a free port.
#[derive(Debug, Clone)]
pub struct StackLayout {
    /// Where Redis comes from.
    pub redis: RedisSource,
    /// The ingress's public listener.
    pub ingress: SocketAddr,
    /// The ingress's admin listener.
    pub ingress_admin: SocketAddr,
    /// The api's public listener.
    pub api: SocketAddr,
    /// The api's admin listener.
    pub api_admin: SocketAddr,
    /// The first worker's admin listener; the next workers take the next
    /// ports (or free ones when this port is 0).
    pub worker_admin: SocketAddr,
    /// The exporter's listener, when one runs.
    pub exporter: Option<SocketAddr>,
    /// The dashboard, when one runs.
    pub dashboard: Option<DashboardPlan>,
    /// The api's database URL, in place of what the spec names.
    pub database_url: Option<String>,
    /// Artificial delay of the api's product reads.
    pub products_db_delay: Option<Duration>,
    /// The metrics sink of the roles that have one.
    pub metrics: Option<RoleMetrics>,
    /// Wait at start until every role is ready (`/health/ready`); `false`
    /// waits only until each answers (`/health/live`), for a stack whose
    /// Redis is disabled or not reachable yet.
    pub wait_ready: bool,
}

/// The dashboard of a stack that has one.
#[derive(Debug, Clone)]
pub struct DashboardPlan {
    /// Its listener.
    pub listen: SocketAddr,
    /// The control API it may play faults through, and its token.
    pub control: Option<(String, String)>,
}

impl StackLayout {
    /// Every listener on a free loopback port, a private Redis, no
    /// exporter and no dashboard: a scenario's stack.
    pub fn free() -> StackLayout {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        StackLayout {
            redis: RedisSource::Private,
            ingress: any,
            ingress_admin: any,
            api: any,
            api_admin: any,
            worker_admin: any,
            exporter: None,
            dashboard: None,
            database_url: None,
            products_db_delay: None,
            metrics: None,
            wait_ready: true,
        }
    }
}

/// Writes a role's launch as the arguments of the `holdfast` binary. The
/// binary implements it with its own argument types and their parser, so a
/// renamed flag fails to compile or fails the binary's round-trip test.
pub trait RoleCommandLine: Send + Sync + std::fmt::Debug {
    /// The arguments, subcommand first (`worker --redis-url …`).
    ///
    /// # Errors
    /// The arguments could not be made (the environment holds a value the
    /// role's parser refuses); the text says why.
    fn command_line(&self, launch: &RoleLaunch) -> Result<Vec<String>, String>;
}

/// How the stack starts role processes: which binary, and how to write
/// their command lines.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `holdfast` binary.
    pub bin: PathBuf,
    /// Its command lines.
    pub command_line: Arc<dyn RoleCommandLine>,
}

impl Launcher {
    /// The role `name`, not started yet: the command line its `launch` is
    /// written as, the environment it adds, and its log file `{name}.log`
    /// in `logs`.
    fn role(
        &self,
        name: String,
        admin: SocketAddr,
        launch: &RoleLaunch,
        env: Vec<(&'static str, String)>,
        logs: &Path,
    ) -> Result<Role, StackError> {
        let args =
            self.command_line
                .command_line(launch)
                .map_err(|reason| StackError::CommandLine {
                    role: name.clone(),
                    reason,
                })?;
        Ok(Role {
            log: logs.join(format!("{name}.log")),
            name,
            admin,
            args,
            env,
            child: None,
            restarts: 0,
            started_unix_ms: 0,
        })
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// redis-server did not start.
    #[error("redis-server: {0}")]
    Redis(#[from] holdfast_redis::local::LocalRedisError),
    /// A process or socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A role did not become ready.
    #[error("{role} did not answer its health probe within {READY_TIMEOUT:?}; its log: {}", log.display())]
    NotReady {
        /// The role.
        role: String,
        /// Its log file.
        log: PathBuf,
    },
    /// A role exited before it was ready (a port taken, a bad setting).
    #[error("{role} exited at start ({status}); its log: {}", log.display())]
    Exited {
        /// The role.
        role: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
    /// A role's command line could not be written.
    #[error("the command line of {role}: {reason}")]
    CommandLine {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// The database URL cannot be put behind a proxy.
    #[error("database URL {0:?} has no host:port to put a proxy in front of")]
    DatabaseUrl(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Io { what, source }
}

/// A free loopback port (bound, then released for the child to bind),
/// outside the range the kernel picks the local ports of outgoing
/// connections from: a run's loads open thousands of connections, and one
/// of them could otherwise take the port between its release and the
/// child's bind.
pub fn free_port() -> std::io::Result<u16> {
    let (low, high) = ephemeral_range();
    // Below the range when there is room, else above it.
    let (from, to) = if low >= 1024 + 4096 {
        (low.saturating_sub(12_000).max(1024), low)
    } else {
        (high.saturating_add(1), u16::MAX)
    };
    // Ports handed out by this process, never handed out again: two
    // stacks started side by side must not both get one.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    if from < to {
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..100 {
            let port = fastrand::u16(from..to);
            if given.contains(&port) {
                continue;
            }
            if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                given.push(port);
                return Ok(listener.local_addr()?.port());
            }
        }
    }
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The kernel's range of local ports for outgoing connections (Linux's
/// default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// One role process.
pub struct Role {
    /// `worker-1`, `ingress`, `api`, `exporter`, `dashboard`.
    pub name: String,
    /// The admin listener (`/health`).
    pub admin: SocketAddr,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Option<Child>,
    restarts: u32,
    /// When it was last started, Unix milliseconds.
    started_unix_ms: u64,
}

impl Role {
    fn spawn(&mut self, bin: &Path) -> Result<(), StackError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("log file of {}", self.name)))?;
        let err = log.try_clone().map_err(io("log file"))?;
        let child = Command::new(bin)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .env_remove(DASHBOARD_TOKEN_ENV)
            // Credentials a shell may hold for the public APIs would turn
            // authentication on under loads that send none.
            .env_remove("HOLDFAST_API_KEYS")
            .env_remove("HOLDFAST_JWT_SECRET")
            .env_remove("HOLDFAST_JWT_PUBLIC_KEY")
            .env_remove("HOLDFAST_JWT_ISSUER")
            .env_remove("HOLDFAST_JWT_AUDIENCE")
            // The role stops by itself if this process dies without
            // stopping it (a SIGKILL leaves no chance to): no orphans.
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // A group of its own: a Ctrl-C in the terminal reaches the
            // process that started the stack, which stops the roles in
            // order, not every role at once.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {} ({})", self.name, bin.display())))?;
        self.child = Some(child);
        self.started_unix_ms = crate::supervisor::unix_ms();
        Ok(())
    }

    /// When it was last started, Unix milliseconds.
    pub fn started_unix_ms(&self) -> u64 {
        self.started_unix_ms
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// How often the supervisor started it again after it died.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// SIGKILL, and wait for the process to be gone. The stack then knows
    /// it is down on purpose: the supervisor leaves it down.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGKILL, as a crash or the OOM killer would, without telling the
    /// stack: the supervisor sees a process that died and starts it again,
    /// exactly as it would after a real crash. `false` when it was not
    /// running.
    pub fn crash(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
    }

    /// Whether the process has exited since it was started (and was not
    /// stopped through this handle): how it ended, once. The handle then
    /// counts it as not running.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// SIGTERM, without waiting.
    fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits for a role already sent SIGTERM to exit, and SIGKILLs it after
    /// the grace period. It must not get a second SIGTERM: a role exits at
    /// once, without draining, on the second signal.
    async fn wait_or_kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The role's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// A replicated Redis of the stack's own.
pub enum LocalTopology {
    /// A primary, a replica and three sentinels (boxed: two servers' worth
    /// of state against the cluster's one vector).
    Sentinel(Box<LocalSentinel>),
    /// Three primaries with a replica each.
    Cluster(LocalCluster),
}

impl LocalTopology {
    /// The URL the roles connect with.
    pub fn url(&self) -> String {
        match self {
            LocalTopology::Sentinel(setup) => setup.url(),
            LocalTopology::Cluster(cluster) => cluster.url(),
        }
    }

    /// The pid of every process that runs.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            LocalTopology::Sentinel(setup) => setup.pids(),
            LocalTopology::Cluster(cluster) => cluster.pids(),
        }
    }
}

/// The running stack.
pub struct Stack {
    bin: PathBuf,
    /// The private redis-server, unless Redis came by URL or is disabled,
    /// or the stack runs a replicated topology.
    pub redis: Option<LocalRedis>,
    /// The replicated Redis of a `sentinel` or `cluster` stack.
    pub topology: Option<LocalTopology>,
    /// The Redis URL of the roles, as they were started (through the proxy
    /// when there is one).
    pub roles_redis_url: String,
    /// Where Redis comes from.
    pub redis_source: RedisSource,
    /// Proxy between the roles and Redis, when asked for.
    pub redis_proxy: Option<Proxy>,
    /// Proxy between the api and its database, when asked for.
    pub database_proxy: Option<Proxy>,
    /// Worker processes.
    pub workers: Vec<Role>,
    /// The ingress process.
    pub ingress: Role,
    /// The api process.
    pub api: Role,
    /// The exporter process, when the stack has one.
    pub exporter: Option<Role>,
    /// The dashboard process, when the stack has one.
    pub dashboard: Option<Role>,
    /// Public URL of the ingress.
    pub ingress_url: String,
    /// Public URL of the api.
    pub api_url: String,
    /// URL of the exporter's `/metrics`, when there is one.
    pub exporter_url: Option<String>,
    /// URL of the dashboard, when there is one.
    pub dashboard_url: Option<String>,
    /// The api's database URL (through its proxy when there is one).
    pub database_url: String,
    /// The password the roles were started with.
    pub password: Option<String>,
}

impl Stack {
    /// Starts Redis, the proxies and the roles of a scenario on free ports,
    /// and waits until every role is ready. `dir` receives the logs (and
    /// the SQLite file).
    pub async fn start(
        launcher: &Launcher,
        spec: &StackSpec,
        dir: &Path,
    ) -> Result<Stack, StackError> {
        Self::start_with(launcher, spec, &StackLayout::free(), dir).await
    }

    /// Starts the stack `spec` describes, laid out as `layout` says, and
    /// waits until every role is ready.
    pub async fn start_with(
        launcher: &Launcher,
        spec: &StackSpec,
        layout: &StackLayout,
        dir: &Path,
    ) -> Result<Stack, StackError> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("creating the log directory"))?;
        let mut topology = None;
        let (redis, direct_url) = match &layout.redis {
            RedisSource::Private if spec.topology == Topology::Sentinel => {
                let setup = LocalSentinel::start().await?;
                let url = setup.url();
                topology = Some(LocalTopology::Sentinel(Box::new(setup)));
                (None, url)
            }
            RedisSource::Private if spec.topology == Topology::Cluster => {
                let cluster = LocalCluster::start(3, 1).await?;
                let url = cluster.url();
                topology = Some(LocalTopology::Cluster(cluster));
                (None, url)
            }
            RedisSource::Private => {
                let redis = LocalRedis::start(LocalRedisOptions {
                    aof: spec.durability != Durability::None,
                    appendfsync: match spec.durability {
                        Durability::None => None,
                        other => Some(other.as_str().to_owned()),
                    },
                    password: spec.redis_password.clone(),
                    own_process_group: true,
                    ..LocalRedisOptions::default()
                })
                .await?;
                let url = redis.url();
                (Some(redis), url)
            }
            RedisSource::External(url) => (None, url.clone()),
            RedisSource::Disabled => (None, String::new()),
        };
        // A proxy needs a plain host:port to forward to: the private
        // server always has one; a Redis by URL is left as it is.
        let redis_proxy = match &redis {
            Some(server) if spec.redis_proxy => Some(
                Proxy::start(
                    "redis",
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    format!("127.0.0.1:{}", server.port()),
                )
                .await
                .map_err(io("starting the redis proxy"))?,
            ),
            _ => None,
        };
        let role_redis = RoleRedis {
            url: match &redis_proxy {
                Some(proxy) => {
                    let port = proxy.local_addr().port();
                    match &spec.redis_password {
                        Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
                        None => format!("redis://127.0.0.1:{port}/"),
                    }
                }
                None if direct_url.is_empty() => holdfast_redis::RedisConfig::DEFAULT_URL.into(),
                None => direct_url.clone(),
            },
            enabled: layout.redis != RedisSource::Disabled,
            partitions: spec.partitions.max(1),
        };

        let (database_url, database_proxy) = match &layout.database_url {
            Some(url) => (url.clone(), None),
            None => database(spec, dir).await?,
        };

        let mut workers = Vec::new();
        for i in 1..=spec.workers {
            let name = format!("worker-{i}");
            let admin = if layout.worker_admin.port() == 0 {
                port_addr()?
            } else {
                next_worker_admin(layout, &workers)
            };
            let launch = RoleLaunch::Worker(WorkerLaunch {
                redis: role_redis.clone(),
                metrics: layout.metrics,
                admin,
                consumer_name: name.clone(),
                claim_timeout: spec.claim_timeout,
                processing_time: spec.processing_time,
                drain_timeout: WORKER_DRAIN_TIMEOUT,
            });
            workers.push(launcher.role(name, admin, &launch, Vec::new(), &logs)?);
        }
        let ingress_listen = or_free(layout.ingress)?;
        let ingress_admin = or_free(layout.ingress_admin)?;
        let launch = RoleLaunch::Ingress(IngressLaunch {
            redis: role_redis.clone(),
            durability: spec.request_durability,
            metrics: layout.metrics,
            listen: ingress_listen,
            admin: ingress_admin,
        });
        let ingress = launcher.role("ingress".into(), ingress_admin, &launch, Vec::new(), &logs)?;
        let api_listen = or_free(layout.api)?;
        let api_admin = or_free(layout.api_admin)?;
        let launch = RoleLaunch::Api(ApiLaunch {
            redis: role_redis.clone(),
            metrics: layout.metrics,
            listen: api_listen,
            admin: api_admin,
            database_url: database_url.clone(),
            cache_ttl: spec.cache_ttl,
            products_db_delay: layout.products_db_delay,
        });
        let api = launcher.role("api".into(), api_admin, &launch, Vec::new(), &logs)?;
        let exporter = match layout.exporter {
            Some(listen) => {
                let listen = or_free(listen)?;
                let launch = RoleLaunch::Exporter(ExporterLaunch {
                    redis: role_redis.clone(),
                    listen,
                });
                Some(launcher.role("exporter".into(), listen, &launch, Vec::new(), &logs)?)
            }
            None => None,
        };
        let dashboard = match &layout.dashboard {
            Some(plan) => {
                let listen = or_free(plan.listen)?;
                let launch = RoleLaunch::Dashboard(DashboardLaunch {
                    redis: role_redis.clone(),
                    listen,
                    control_url: plan.control.as_ref().map(|(url, _)| url.clone()),
                });
                let mut env = Vec::new();
                if let Some((_, token)) = &plan.control {
                    env.push((DASHBOARD_TOKEN_ENV, token.clone()));
                }
                Some(launcher.role("dashboard".into(), listen, &launch, env, &logs)?)
            }
            None => None,
        };
        let mut stack = Stack {
            bin: launcher.bin.clone(),
            redis,
            topology,
            roles_redis_url: role_redis.url,
            redis_source: layout.redis.clone(),
            redis_proxy,
            database_proxy,
            workers,
            ingress,
            api,
            exporter_url: exporter
                .as_ref()
                .map(|r| format!("http://{}/metrics", r.admin)),
            dashboard_url: dashboard.as_ref().map(|r| format!("http://{}/", r.admin)),
            exporter,
            dashboard,
            ingress_url: format!("http://{ingress_listen}"),
            api_url: format!("http://{api_listen}"),
            database_url,
            password: spec.redis_password.clone(),
        };
        for role in stack.roles_mut() {
            role.spawn(&launcher.bin)?;
        }
        let client = reqwest::Client::new();
        let probe = if layout.wait_ready { "ready" } else { "live" };
        for role in stack.roles_mut() {
            wait_ready(&client, role, probe).await?;
        }
        Ok(stack)
    }

    /// The URL of Redis itself, not through the proxy: the private server's
    /// (with its current password), or the one given. Empty when Redis is
    /// disabled.
    pub fn redis_url(&self) -> String {
        match (&self.redis, &self.redis_source) {
            (Some(server), _) => server.url(),
            (None, _) if self.topology.is_some() => self.roles_redis_url.clone(),
            (None, RedisSource::External(url)) => url.clone(),
            (None, _) => String::new(),
        }
    }

    /// The public URL of role process `name`, if it has one.
    pub fn public_url(&self, name: &str) -> Option<String> {
        match name {
            "ingress" => Some(self.ingress_url.clone()),
            "api" => Some(self.api_url.clone()),
            "dashboard" => self
                .dashboard_url
                .clone()
                .map(|u| u.trim_end_matches('/').to_owned()),
            _ => None,
        }
    }

    /// Every role: workers, ingress, api, then the exporter and the
    /// dashboard when there are.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.workers
            .iter()
            .chain(std::iter::once(&self.ingress))
            .chain(std::iter::once(&self.api))
            .chain(self.exporter.iter())
            .chain(self.dashboard.iter())
    }

    pub(crate) fn roles_mut(&mut self) -> impl Iterator<Item = &mut Role> {
        self.workers
            .iter_mut()
            .chain(std::iter::once(&mut self.ingress))
            .chain(std::iter::once(&mut self.api))
            .chain(self.exporter.iter_mut())
            .chain(self.dashboard.iter_mut())
    }

    /// The pid of every process of the stack that runs now: the roles and
    /// the private redis-server.
    pub fn pids(&self) -> Vec<u32> {
        self.roles()
            .filter_map(Role::pid)
            .chain(self.redis.as_ref().and_then(LocalRedis::pid))
            .chain(self.topology.iter().flat_map(LocalTopology::pids))
            .collect()
    }

    /// Starts a killed worker again with the same arguments (and consumer
    /// name, so it finds its own pending entries).
    pub async fn restart_worker(&mut self, index: usize) -> Result<(), StackError> {
        let bin = self.bin.clone();
        let worker = &mut self.workers[index];
        if !worker.is_running() {
            worker.spawn(&bin)?;
        }
        Ok(())
    }

    /// Starts the role `name` again after it died, counting the restart.
    pub(crate) fn respawn(&mut self, name: &str) -> Result<u32, StackError> {
        let bin = self.bin.clone();
        let Some(role) = self.roles_mut().find(|r| r.name == name) else {
            return Ok(0);
        };
        if !role.is_running() {
            role.spawn(&bin)?;
            role.restarts += 1;
        }
        Ok(role.restarts)
    }

    /// Stops every role (SIGTERM, then SIGKILL): the dashboard and the
    /// public roles first, the workers last so they answer what the ingress
    /// still has in flight; then the proxies and Redis.
    pub async fn stop(&mut self) {
        // SIGTERM to a whole group at once, then wait for each: the group
        // takes as long as its slowest, not the sum.
        for workers in [false, true] {
            for role in self.roles_mut() {
                if role.name.starts_with("worker-") == workers {
                    role.terminate();
                }
            }
            for role in self.roles_mut() {
                if role.name.starts_with("worker-") == workers {
                    role.wait_or_kill().await;
                }
            }
        }
        if let Some(proxy) = self.redis_proxy.take() {
            proxy.shutdown().await;
        }
        if let Some(proxy) = self.database_proxy.take() {
            proxy.shutdown().await;
        }
        if let Some(redis) = self.redis.as_mut() {
            redis.stop().await;
        }
        // Its servers and sentinels are killed with it.
        self.topology = None;
    }
}

/// The first port from the layout's worker admin port on that no other
/// listener of the layout and no worker before has.
fn next_worker_admin(layout: &StackLayout, workers: &[Role]) -> SocketAddr {
    let taken: Vec<u16> = [
        Some(layout.ingress),
        Some(layout.ingress_admin),
        Some(layout.api),
        Some(layout.api_admin),
        layout.exporter,
        layout.dashboard.as_ref().map(|d| d.listen),
    ]
    .into_iter()
    .flatten()
    .map(|a| a.port())
    .chain(workers.iter().map(|w| w.admin.port()))
    .collect();
    let mut admin = layout.worker_admin;
    while taken.contains(&admin.port()) {
        admin.set_port(admin.port().wrapping_add(1));
    }
    admin
}

fn or_free(addr: SocketAddr) -> Result<SocketAddr, StackError> {
    if addr.port() == 0 {
        let mut addr = addr;
        addr.set_port(free_port().map_err(io("choosing a free port"))?);
        Ok(addr)
    } else {
        Ok(addr)
    }
}

fn port_addr() -> Result<SocketAddr, StackError> {
    let port = free_port().map_err(io("choosing a free port"))?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

async fn wait_ready(
    client: &reqwest::Client,
    role: &mut Role,
    probe: &str,
) -> Result<(), StackError> {
    let url = format!("http://{}/health/{probe}", role.admin);
    let give_up = tokio::time::Instant::now() + READY_TIMEOUT;
    while tokio::time::Instant::now() < give_up {
        if let Some(status) = role.exited() {
            return Err(StackError::Exited {
                role: role.name.clone(),
                status: status.to_string(),
                log: role.log.clone(),
            });
        }
        let ready = client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StackError::NotReady {
        role: role.name.clone(),
        log: role.log.clone(),
    })
}

/// The api's database URL, and the proxy in front of it when asked for.
async fn database(spec: &StackSpec, dir: &Path) -> Result<(String, Option<Proxy>), StackError> {
    let url = match spec.database.as_str() {
        "sqlite" => {
            return Ok((
                format!("sqlite://{}?mode=rwc", dir.join("chaos.db").display()),
                None,
            ));
        }
        "postgres" => std::env::var("HOLDFAST_CHAOS_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned()),
        "mysql" => std::env::var("HOLDFAST_CHAOS_MYSQL_URL")
            .unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_owned()),
        other => other.to_owned(),
    };
    if !spec.database_proxy {
        return Ok((url, None));
    }
    let (upstream, rewrite) =
        split_authority(&url).ok_or_else(|| StackError::DatabaseUrl(url.clone()))?;
    let proxy = Proxy::start(
        "database",
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        upstream,
    )
    .await
    .map_err(io("starting the database proxy"))?;
    let url = rewrite(&format!("127.0.0.1:{}", proxy.local_addr().port()));
    Ok((url, Some(proxy)))
}

/// The `host:port` of a URL, and a function that puts another in its place.
fn split_authority(url: &str) -> Option<(String, impl Fn(&str) -> String)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_start..];
    if host_port.is_empty() {
        return None;
    }
    let default_port = if url.starts_with("mysql") { 3306 } else { 5432 };
    let upstream = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    let before = url[..scheme_end + host_start].to_owned();
    let after = url[scheme_end + authority_end..].to_owned();
    Some((upstream, move |new: &str| format!("{before}{new}{after}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_gets_the_proxy_in_place_of_its_host() {
        let (upstream, rewrite) =
            split_authority("postgres://postgres@127.0.0.1:5432/test?sslmode=disable").unwrap();
        assert_eq!(upstream, "127.0.0.1:5432");
        assert_eq!(
            rewrite("127.0.0.1:9999"),
            "postgres://postgres@127.0.0.1:9999/test?sslmode=disable"
        );
        let (upstream, rewrite) = split_authority("mysql://root:pw@db/test").unwrap();
        assert_eq!(upstream, "db:3306");
        assert_eq!(rewrite("127.0.0.1:1"), "mysql://root:pw@127.0.0.1:1/test");
        assert!(split_authority("sqlite:chaos.db").is_none());
    }
}
