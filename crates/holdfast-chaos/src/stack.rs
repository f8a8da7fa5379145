//! The stack a scenario runs against: a private redis-server, fault proxies
//! where the scenario asks for them, and the holdfast roles as child
//! processes of the `holdfast` binary (workers, ingress, api), each on free
//! loopback ports with its log in the run's directory.
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
use tokio::process::{Child, Command};

use crate::proxy::Proxy;
use crate::scenario::{Durability, StackSpec};

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
}

/// A worker of the stack; what is not named keeps the role's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLaunch {
    /// Redis (or the proxy in front of it).
    pub redis_url: String,
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
    /// Redis (or the proxy in front of it).
    pub redis_url: String,
    /// The public listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

/// The api of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLaunch {
    /// Redis (or the proxy in front of it).
    pub redis_url: String,
    /// The public listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its database (or the proxy in front of it).
    pub database_url: String,
    /// How long a cached value is fresh.
    pub cache_ttl: Duration,
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
    /// written as, and its log file `{name}.log` in `logs`.
    fn role(
        &self,
        name: String,
        admin: SocketAddr,
        launch: &RoleLaunch,
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
            child: None,
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
    #[error("{role} was not ready within {READY_TIMEOUT:?}; its log: {}", log.display())]
    NotReady {
        /// The role.
        role: String,
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

/// A free loopback port (bound, then released for the child to bind).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One role process.
pub struct Role {
    /// `worker-1`, `ingress`, `api`.
    pub name: String,
    /// The admin listener (`/health`).
    pub admin: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
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
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {} ({})", self.name, bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then SIGKILL after a grace period.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
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

/// The running stack.
pub struct Stack {
    bin: PathBuf,
    /// The private redis-server.
    pub redis: LocalRedis,
    /// Proxy between the roles and Redis, when the scenario asked for one.
    pub redis_proxy: Option<Proxy>,
    /// Proxy between the api and its database, when asked for.
    pub database_proxy: Option<Proxy>,
    /// Worker processes.
    pub workers: Vec<Role>,
    /// The ingress process.
    pub ingress: Role,
    /// The api process.
    pub api: Role,
    /// Public URL of the ingress.
    pub ingress_url: String,
    /// Public URL of the api.
    pub api_url: String,
    /// The password the roles were started with.
    pub password: Option<String>,
}

impl Stack {
    /// Starts Redis, the proxies and the roles, and waits until every role
    /// is ready. `dir` receives the logs (and the SQLite file).
    pub async fn start(
        launcher: &Launcher,
        spec: &StackSpec,
        dir: &Path,
    ) -> Result<Stack, StackError> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("creating the log directory"))?;
        let redis = LocalRedis::start(LocalRedisOptions {
            aof: spec.durability != Durability::None,
            appendfsync: match spec.durability {
                Durability::None => None,
                other => Some(other.as_str().to_owned()),
            },
            password: spec.redis_password.clone(),
            ..LocalRedisOptions::default()
        })
        .await?;
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let redis_proxy = if spec.redis_proxy {
            Some(
                Proxy::start("redis", loopback, format!("127.0.0.1:{}", redis.port()))
                    .await
                    .map_err(io("starting the redis proxy"))?,
            )
        } else {
            None
        };
        let redis_port = redis_proxy
            .as_ref()
            .map_or(redis.port(), |p| p.local_addr().port());
        let redis_url = match &spec.redis_password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{redis_port}/"),
            None => format!("redis://127.0.0.1:{redis_port}/"),
        };

        let (database_url, database_proxy) = database(spec, dir).await?;

        let mut workers = Vec::new();
        for i in 1..=spec.workers {
            let name = format!("worker-{i}");
            let admin = port_addr()?;
            let launch = RoleLaunch::Worker(WorkerLaunch {
                redis_url: redis_url.clone(),
                admin,
                consumer_name: name.clone(),
                claim_timeout: spec.claim_timeout,
                processing_time: spec.processing_time,
                drain_timeout: WORKER_DRAIN_TIMEOUT,
            });
            workers.push(launcher.role(name, admin, &launch, &logs)?);
        }
        let ingress_listen = port_addr()?;
        let ingress_admin = port_addr()?;
        let launch = RoleLaunch::Ingress(IngressLaunch {
            redis_url: redis_url.clone(),
            listen: ingress_listen,
            admin: ingress_admin,
        });
        let ingress = launcher.role("ingress".into(), ingress_admin, &launch, &logs)?;
        let api_listen = port_addr()?;
        let api_admin = port_addr()?;
        let launch = RoleLaunch::Api(ApiLaunch {
            redis_url,
            listen: api_listen,
            admin: api_admin,
            database_url,
            cache_ttl: spec.cache_ttl,
        });
        let api = launcher.role("api".into(), api_admin, &launch, &logs)?;
        let mut stack = Stack {
            bin: launcher.bin.clone(),
            redis,
            redis_proxy,
            database_proxy,
            workers,
            ingress,
            api,
            ingress_url: format!("http://{ingress_listen}"),
            api_url: format!("http://{api_listen}"),
            password: spec.redis_password.clone(),
        };
        for role in stack.roles_mut() {
            role.spawn(&launcher.bin)?;
        }
        let client = reqwest::Client::new();
        for role in stack.roles() {
            wait_ready(&client, role).await?;
        }
        Ok(stack)
    }

    /// Every role, workers first.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.workers
            .iter()
            .chain(std::iter::once(&self.ingress))
            .chain(std::iter::once(&self.api))
    }

    fn roles_mut(&mut self) -> impl Iterator<Item = &mut Role> {
        self.workers
            .iter_mut()
            .chain(std::iter::once(&mut self.ingress))
            .chain(std::iter::once(&mut self.api))
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

    /// Stops every role (SIGTERM, then SIGKILL), the proxies and Redis.
    pub async fn stop(mut self) {
        for role in self.roles_mut() {
            role.stop().await;
        }
        if let Some(proxy) = self.redis_proxy.take() {
            proxy.shutdown().await;
        }
        if let Some(proxy) = self.database_proxy.take() {
            proxy.shutdown().await;
        }
        self.redis.stop().await;
    }
}

fn port_addr() -> Result<SocketAddr, StackError> {
    let port = free_port().map_err(io("choosing a free port"))?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

async fn wait_ready(client: &reqwest::Client, role: &Role) -> Result<(), StackError> {
    let url = format!("http://{}/health/ready", role.admin);
    let give_up = tokio::time::Instant::now() + READY_TIMEOUT;
    while tokio::time::Instant::now() < give_up {
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
