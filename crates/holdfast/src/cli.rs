//! Command-line interface: every flag, its environment variable and default.
//!
//! Precedence: built-in defaults, then the `--config` file (see
//! `config_file`), then `HOLDFAST_*` (and the familiar `REDIS_URL`,
//! `DATABASE_URL`, `REDIS_ENABLED`) environment variables, then flags.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use holdfast_core::{Keys, Topic};
use holdfast_redis::RedisConfig;
use holdfast_services::api::{ApiSettings, DatabaseUrl};
use holdfast_services::auth::{ApiKey, Auth, AuthConfig, AuthConfigError};
use holdfast_services::dashboard::DashboardSettings;
use holdfast_services::exporter::ExporterSettings;
use holdfast_services::http::StackConfig;
use holdfast_services::ingress::IngressSettings;
use holdfast_services::rate_limit::RateLimitConfig;
use holdfast_services::worker::WorkerSettings;
use holdfast_streams::WorkerConfig;
use holdfast_telemetry::sink::SinkConfig;

/// holdfast: services on Redis that keep working when things break.
#[derive(Parser, Debug)]
#[command(name = "holdfast", version, about, long_about = None)]
pub struct Cli {
    /// TOML file of settings, between the built-in defaults and the
    /// environment (`holdfast config sample` prints one with every
    /// setting).
    #[arg(long, global = true, env = crate::config_file::CONFIG_ENV, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles and tools.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The whole demo stack in one process: a private redis-server (unless
    /// REDIS_URL is set), the ingress, two workers and the api.
    Up(UpArgs),
    /// Users and products from a SQL database, read through the Redis cache.
    Api(ApiArgs),
    /// HTTP front door that calls workers over Redis Streams.
    Ingress(IngressArgs),
    /// Stream worker for a topic (the weather demo's handler).
    Worker(WorkerArgs),
    /// Prometheus endpoint for what lives in Redis: the metrics every role
    /// flushes, Redis essentials and every topic's backlog.
    Exporter(ExporterArgs),
    /// The web dashboard: every registered instance of the stack with its
    /// health and Redis state (overview; more views to come).
    Dashboard(DashboardArgs),
    /// List, replay or purge a topic's dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Benchmarks that print figures (they never fail a build).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// HTTP load generator: closed (concurrency) or open (rate) model,
    /// latency percentiles from an HDR histogram.
    Load(crate::load_cmd::LoadArgs),
    /// A trivial HTTP endpoint that answers 200 at once: a known target for
    /// measuring `holdfast load` itself.
    #[command(hide = true)]
    LoadTarget(crate::load_cmd::TargetArgs),
    /// Fault injection: the TCP fault proxy and the chaos scenarios.
    #[command(subcommand)]
    Chaos(crate::chaos_cmd::ChaosCommand),
    /// The configuration a role would start with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Exit 0 when URL answers 2xx in time, 1 with the reason otherwise: a
    /// container health check that needs no curl.
    Probe(ProbeArgs),
}

/// `holdfast probe`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ProbeArgs {
    /// The URL to GET: a role's `/health/live` or `/health/ready`.
    #[arg(
        env = "HOLDFAST_PROBE_URL",
        default_value = "http://127.0.0.1:5010/health/live"
    )]
    pub url: String,
    /// How long the answer may take.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `holdfast config`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the settings a role (or, without one, every role) would start
    /// with, each with where its value comes from: default, the --config
    /// file, an environment variable or a flag (`holdfast config show
    /// worker --concurrency 32`). Passwords and tokens show as `***`.
    Show(ShowArgs),
    /// Print a configuration file with every setting, its environment
    /// variable and its default, all commented out.
    Sample,
}

/// `holdfast config show [ROLE]`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The role; without one, every role.
    #[command(subcommand)]
    pub role: Option<Box<ShowRole>>,
}

/// The role whose settings `holdfast config show` prints.
#[derive(Subcommand, Debug)]
pub enum ShowRole {
    /// The api's settings.
    Api(ApiArgs),
    /// The ingress's settings.
    Ingress(IngressArgs),
    /// A worker's settings.
    Worker(WorkerArgs),
    /// The exporter's settings.
    Exporter(ExporterArgs),
    /// The dashboard's settings.
    Dashboard(DashboardArgs),
}

/// How to reach Redis.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for
    /// TLS. Without it, the URL is built from --redis-host and the flags
    /// beside it, else redis://127.0.0.1:6379/.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis host, when there is no --redis-url.
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port, when there is no --redis-url (default 6379).
    #[arg(long, env = "REDIS_PORT")]
    pub redis_port: Option<u16>,
    /// ACL user name, when there is no --redis-url.
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Password, when there is no --redis-url (prefer the environment
    /// variable: a flag is visible to every user of the machine).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Database number, when there is no --redis-url.
    #[arg(long, env = "REDIS_DB")]
    pub redis_db: Option<u32>,
    /// TLS (rediss://), when there is no --redis-url.
    #[arg(long, env = "REDIS_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_tls: bool,
    /// PEM file of the CA that signed the Redis server's certificate (TLS),
    /// in place of the system's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate for mutual TLS (with --redis-client-key).
    #[arg(long, env = "REDIS_CLIENT_CERT")]
    pub redis_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(long, env = "REDIS_CLIENT_KEY")]
    pub redis_client_key: Option<std::path::PathBuf>,
    /// Accept any server certificate (TLS). Development only: it is logged
    /// as a warning.
    #[arg(long, env = "REDIS_TLS_INSECURE")]
    pub redis_tls_insecure: bool,
    /// Set to false to run without Redis (calls then fail with 503).
    #[arg(long, env = "REDIS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub redis_enabled: bool,
    /// Prefix of every key holdfast writes.
    #[arg(long, env = "HOLDFAST_KEY_PREFIX", default_value = Keys::DEFAULT_PREFIX)]
    pub key_prefix: String,
    /// Partitions per topic (callers and workers must agree).
    #[arg(long, env = "HOLDFAST_PARTITIONS", default_value_t = Topic::DEFAULT_PARTITIONS)]
    pub partitions: u16,
}

impl RedisArgs {
    /// The URL to connect to: --redis-url, else one built from
    /// --redis-host and the flags beside it, else the default.
    pub fn url(&self) -> String {
        if let Some(url) = &self.redis_url {
            return url.clone();
        }
        let Some(host) = &self.redis_host else {
            return RedisConfig::DEFAULT_URL.to_owned();
        };
        let scheme = if self.redis_tls { "rediss" } else { "redis" };
        let user = self
            .redis_username
            .as_deref()
            .map(userinfo)
            .unwrap_or_default();
        let auth = match &self.redis_password {
            Some(password) => format!("{user}:{}@", userinfo(password)),
            None if !user.is_empty() => format!("{user}@"),
            None => String::new(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let port = self.redis_port.unwrap_or(6379);
        let db = self.redis_db.unwrap_or(0);
        format!("{scheme}://{auth}{host}:{port}/{db}")
    }

    /// The TLS options.
    pub fn tls(&self) -> holdfast_redis::TlsOptions {
        holdfast_redis::TlsOptions {
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
            insecure: self.redis_tls_insecure,
        }
    }
}

/// Percent-encodes a URL's user name or password.
fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where this process's metrics go besides its own `/metrics`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct MetricsSinkArgs {
    /// How often this process adds its metrics to the aggregates in Redis
    /// that `holdfast exporter` serves.
    #[arg(long, env = "HOLDFAST_METRICS_FLUSH_INTERVAL", default_value = duration_text(SinkConfig::DEFAULT_INTERVAL), value_parser = parse_duration)]
    pub metrics_flush_interval: Duration,
    /// Keep this process's metrics out of Redis (its own /metrics still
    /// serves them).
    #[arg(long, env = "HOLDFAST_NO_METRICS_SINK")]
    pub no_metrics_sink: bool,
}

impl Default for MetricsSinkArgs {
    fn default() -> Self {
        Self {
            metrics_flush_interval: SinkConfig::DEFAULT_INTERVAL,
            no_metrics_sink: false,
        }
    }
}

/// `holdfast ingress`.
/// Limits on the connections of a public listener.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ConnectionArgs {
    /// Time for a request's headers to arrive; also how long a kept-alive
    /// connection may wait idle for its next request.
    #[arg(long, env = "HOLDFAST_HEADER_TIMEOUT", default_value = duration_text(StackConfig::DEFAULT_HEADER_TIMEOUT), value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time for a request's body to arrive whole before 408.
    #[arg(long, env = "HOLDFAST_BODY_TIMEOUT", default_value = duration_text(StackConfig::DEFAULT_BODY_TIMEOUT), value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Connections open at once; one more gets a 503 and is closed.
    #[arg(long, env = "HOLDFAST_MAX_CONNECTIONS", default_value_t = StackConfig::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Requests a second each client address may make to each route
    /// group before 429; 0 turns rate limiting off.
    #[arg(long, env = "HOLDFAST_RATE_LIMIT", default_value_t = RateLimitConfig::DEFAULT_PER_SECOND)]
    pub rate_limit: u32,
    /// Requests a client may make at once within its rate.
    #[arg(long, env = "HOLDFAST_RATE_LIMIT_BURST", default_value_t = RateLimitConfig::DEFAULT_BURST)]
    pub rate_limit_burst: u32,
}

/// Credentials a public listener requires: none unless one of these is
/// set. Clients send `Authorization: Bearer <API key or JWT>` or
/// `X-API-Key: <key>`; `/health*`, `/metrics` and the API documents stay
/// open.
#[derive(Args, Debug, Clone, PartialEq, Default)]
pub struct AuthArgs {
    /// API keys, as NAME:KEY, comma-separated; each key at least 16
    /// characters. The name shows in logs and keys the rate limit. Prefer
    /// the environment variable: a flag is visible to every user of the
    /// machine.
    #[arg(
        long,
        env = "HOLDFAST_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "NAME:KEY,..."
    )]
    pub api_keys: Vec<ApiKey>,
    /// Secret of HS256 JWT (at least 32 bytes). Prefer the environment
    /// variable.
    #[arg(long, env = "HOLDFAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of the RSA public key of RS256 JWT.
    #[arg(long, env = "HOLDFAST_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// The issuer (`iss`) JWT must name.
    #[arg(long, env = "HOLDFAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience (`aud`) JWT must name.
    #[arg(long, env = "HOLDFAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl AuthArgs {
    /// These credentials written into a listener's `stack`: the public key
    /// is read, every setting checked.
    pub fn apply(&self, stack: &mut StackConfig) -> Result<(), String> {
        let jwt_public_key_pem = match &self.jwt_public_key {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                format!(
                    "could not read the JWT public key {}: {err}",
                    path.display()
                )
            })?),
            None => None,
        };
        let cfg = AuthConfig {
            api_keys: self.api_keys.clone(),
            jwt_secret: self.jwt_secret.clone(),
            jwt_public_key_pem,
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
        };
        stack.auth = if cfg.is_on() {
            Some(std::sync::Arc::new(
                Auth::new(&cfg).map_err(|err| err.to_string())?,
            ))
        } else if cfg.jwt_issuer.is_some() || cfg.jwt_audience.is_some() {
            return Err(AuthConfigError::ClaimsWithoutKey.to_string());
        } else {
            None
        };
        Ok(())
    }
}

impl ConnectionArgs {
    /// These limits written into a listener's `stack`; a zero timeout,
    /// which would end every connection or body at once, is refused.
    pub fn apply(&self, stack: &mut StackConfig) -> Result<(), String> {
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err("--header-timeout and --body-timeout must be above 0".to_owned());
        }
        stack.header_timeout = self.header_timeout;
        stack.body_timeout = self.body_timeout;
        stack.max_connections = self.max_connections.max(1);
        stack.rate_limit = (self.rate_limit > 0).then_some(RateLimitConfig {
            per_second: self.rate_limit,
            burst: self.rate_limit_burst.max(1),
        });
        Ok(())
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct IngressArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub metrics: MetricsSinkArgs,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Public listener.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value_t = IngressSettings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Admin listener (/health*, /metrics).
    #[arg(long, env = "HOLDFAST_ADMIN_LISTEN", default_value_t = IngressSettings::DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Topic of weather requests.
    #[arg(long, env = "HOLDFAST_TOPIC", default_value = IngressSettings::DEFAULT_TOPIC)]
    pub topic: String,
    /// Deadline of requests that send no x-timeout-ms header.
    #[arg(long, env = "HOLDFAST_DEFAULT_TIMEOUT", default_value = duration_text(IngressSettings::DEFAULT_TIMEOUT), value_parser = parse_duration)]
    pub default_timeout: Duration,
    /// Backlog (lag + pending) beyond which requests get 429; 0 disables.
    #[arg(long, env = "HOLDFAST_BACKLOG_LIMIT", default_value_t = IngressSettings::DEFAULT_BACKLOG_LIMIT)]
    pub backlog_limit: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "HOLDFAST_BODY_LIMIT", default_value_t = IngressSettings::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Durability of every request that names none in its
    /// Holdfast-Durability header: none, fsync or replicas:N.
    #[arg(long, env = "HOLDFAST_DURABILITY", default_value_t = holdfast_core::Durability::None)]
    pub durability: holdfast_core::Durability,
    /// Refuse at once (503 overloaded, with Retry-After) a request that
    /// would wait longer for a worker than its deadline allows.
    #[arg(long, env = "HOLDFAST_ADMISSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub admission: bool,
    /// With admission, the longest a call may wait in the queue for a
    /// worker, whatever its deadline (jobs: their deadline alone); 0 holds
    /// calls to their deadline alone.
    #[arg(long, env = "HOLDFAST_MAX_QUEUE_WAIT", default_value = duration_text(holdfast_streams::CallerConfig::DEFAULT_MAX_QUEUE_WAIT), value_parser = parse_duration)]
    pub max_queue_wait: Duration,
}

/// Default database of `holdfast api`: the SQLite file
/// [`ApiSettings::DEFAULT_DATABASE_FILE`], as a URL.
pub fn default_database_url() -> String {
    DatabaseUrl::sqlite_file(std::path::Path::new(ApiSettings::DEFAULT_DATABASE_FILE))
        .expose()
        .to_owned()
}

/// `holdfast api`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ApiArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub metrics: MetricsSinkArgs,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Public listener (the API and /health*).
    #[arg(long, env = "HOLDFAST_LISTEN", default_value_t = ApiSettings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Admin listener (/health*, /metrics).
    #[arg(long, env = "HOLDFAST_ADMIN_LISTEN", default_value_t = ApiSettings::DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// The source of truth: sqlite://, postgres:// or mysql:// (the
    /// directory of an SQLite file is created when missing).
    #[arg(long, env = "DATABASE_URL", default_value = default_database_url(), value_parser = parse_database_url)]
    pub database_url: DatabaseUrl,
    /// Artificial delay before every product read from the database (demos).
    #[arg(long, env = "HOLDFAST_PRODUCTS_DB_DELAY", default_value = duration_text(ApiSettings::DEFAULT_PRODUCTS_DB_DELAY), value_parser = parse_duration)]
    pub products_db_delay: Duration,
    /// How long a cached value is fresh.
    #[arg(long, env = "HOLDFAST_CACHE_TTL", default_value = duration_text(ApiSettings::DEFAULT_CACHE_TTL), value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// Products (the first ids, and the first list page) loaded into the
    /// cache at start, in the background; 0 switches the warm-up off.
    #[arg(long, env = "HOLDFAST_WARM_PRODUCTS", default_value_t = holdfast_services::api::ApiSettings::DEFAULT_WARM_PRODUCTS)]
    pub warm_products: u32,
    /// Largest request body in bytes.
    #[arg(long, env = "HOLDFAST_BODY_LIMIT", default_value_t = ApiSettings::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Where the order service looks users up (`{URL}/api/users/{id}`):
    /// another api instance acting as the users service. Without it, the
    /// api calls its own public listener.
    #[arg(long, env = "HOLDFAST_USERS_BASE_URL")]
    pub users_base_url: Option<String>,
}

/// `holdfast worker`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub metrics: MetricsSinkArgs,
    /// Admin listener (/health*, /metrics).
    #[arg(long, env = "HOLDFAST_ADMIN_LISTEN", default_value_t = WorkerSettings::DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Topic to serve.
    #[arg(long, env = "HOLDFAST_TOPIC", default_value = WorkerSettings::DEFAULT_TOPIC)]
    pub topic: String,
    /// Requests handled at once ("terminals").
    #[arg(long, env = "HOLDFAST_CONCURRENCY", default_value_t = WorkerConfig::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Consumer name in the group (default: host-pid-random).
    #[arg(long, env = "HOLDFAST_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Simulated processing time of the weather handler.
    #[arg(long, env = "HOLDFAST_PROCESSING_TIME", default_value = duration_text(WorkerSettings::DEFAULT_PROCESSING_TIME), value_parser = parse_duration)]
    pub processing_time: Duration,
    /// An entry idle this long with a dead consumer is claimed.
    #[arg(long, env = "HOLDFAST_CLAIM_TIMEOUT", default_value = duration_text(WorkerConfig::DEFAULT_CLAIM_TIMEOUT), value_parser = parse_duration)]
    pub claim_timeout: Duration,
    /// Deliveries before an entry becomes a dead letter.
    #[arg(long, env = "HOLDFAST_MAX_DELIVERIES", default_value_t = WorkerConfig::DEFAULT_MAX_DELIVERIES)]
    pub max_deliveries: u32,
    /// How long shutdown waits for requests in progress.
    #[arg(long, env = "HOLDFAST_DRAIN_TIMEOUT", default_value = duration_text(WorkerConfig::DEFAULT_DRAIN_TIMEOUT), value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// With a backlog and nothing consumed this long, report not ready.
    #[arg(long, env = "HOLDFAST_STALL_AFTER", default_value = duration_text(WorkerConfig::DEFAULT_STALL_AFTER), value_parser = parse_duration)]
    pub stall_after: Duration,
}

/// `holdfast exporter`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ExporterArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Listener for /metrics and /health*.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value_t = ExporterSettings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Topics to report, comma-separated, each with --partitions partitions
    /// (default: every topic found under the key prefix, with SCAN).
    #[arg(long, env = "HOLDFAST_TOPICS", value_delimiter = ',')]
    pub topics: Option<Vec<String>>,
}

/// `holdfast dashboard`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Listener for the pages, the JSON API and /health*.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value_t = DashboardSettings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The control API of the stack the dashboard may play faults on
    /// (`holdfast up` gives its own); needs --token. Without it the
    /// dashboard is read-only.
    #[arg(long, env = "HOLDFAST_CONTROL_URL", requires = "token")]
    pub control_url: Option<String>,
    /// The token that mutating requests need (chaos actions, dead-letter
    /// replay and purge), as `Authorization: Bearer TOKEN`. Prefer the
    /// environment variable: a flag is visible to every user of the machine.
    #[arg(long, env = "HOLDFAST_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `holdfast up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub metrics: MetricsSinkArgs,
    /// Use this Redis instead of starting a private redis-server.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Ingress listener.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value_t = loopback(IngressSettings::DEFAULT_PORT))]
    pub listen: SocketAddr,
    /// Ingress admin listener.
    #[arg(long, default_value_t = loopback(IngressSettings::DEFAULT_ADMIN_PORT))]
    pub admin_listen: SocketAddr,
    /// Admin listener of the first worker; the next workers take the next
    /// ports no other listener of `up` has (port 0: free ports).
    #[arg(long, default_value_t = loopback(WorkerSettings::DEFAULT_ADMIN_PORT))]
    pub worker_admin_listen: SocketAddr,
    /// Workers to start.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Simulated processing time of the weather handler.
    #[arg(long, env = "HOLDFAST_PROCESSING_TIME", default_value = duration_text(WorkerSettings::DEFAULT_PROCESSING_TIME), value_parser = parse_duration)]
    pub processing_time: Duration,
    /// Api listener.
    #[arg(long, default_value_t = loopback(ApiSettings::DEFAULT_PORT))]
    pub api_listen: SocketAddr,
    /// Api admin listener.
    #[arg(long, default_value_t = loopback(ApiSettings::DEFAULT_ADMIN_PORT))]
    pub api_admin_listen: SocketAddr,
    /// Dashboard listener.
    #[arg(long, default_value_t = loopback(DashboardSettings::DEFAULT_PORT))]
    pub dashboard_listen: SocketAddr,
    /// Exporter listener (the stack's merged /metrics).
    #[arg(long, default_value_t = loopback(ExporterSettings::DEFAULT_PORT))]
    pub exporter_listen: SocketAddr,
    /// Run the roles without Redis (every Redis-backed feature answers
    /// from its fallback).
    #[arg(long, env = "REDIS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub redis_enabled: bool,
    /// Connect the roles to Redis directly, without the fault proxy (the
    /// dashboard's slow-Redis and blackhole actions then are unavailable).
    #[arg(long)]
    pub no_proxy: bool,
    /// Where the processes' logs go (default: a temporary directory,
    /// removed on exit).
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Database of the api (default: an SQLite file in a temporary
    /// directory, removed on exit).
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,
    /// Artificial delay before product reads from the database, so the
    /// demo shows the cache's effect.
    #[arg(long, default_value = duration_text(UP_PRODUCTS_DB_DELAY), value_parser = parse_duration)]
    pub products_db_delay: Duration,
}

/// `holdfast dead-letters ...`.
#[derive(Subcommand, Debug)]
pub enum DeadLetterCommand {
    /// Print dead letters as JSON lines.
    List {
        #[command(flatten)]
        redis: RedisArgs,
        /// Topic.
        #[arg(long, default_value = WorkerSettings::DEFAULT_TOPIC)]
        topic: String,
        /// Most letters per partition.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Put dead letters back on the request stream with a fresh deadline.
    Replay {
        #[command(flatten)]
        redis: RedisArgs,
        /// Topic.
        #[arg(long, default_value = WorkerSettings::DEFAULT_TOPIC)]
        topic: String,
        /// Dead-letter ids to replay (default: all).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Deadline given to replayed requests.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        deadline: Duration,
    },
    /// Delete every dead letter of a topic.
    Purge {
        #[command(flatten)]
        redis: RedisArgs,
        /// Topic.
        #[arg(long, default_value = WorkerSettings::DEFAULT_TOPIC)]
        topic: String,
    },
}

/// `holdfast bench ...`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Calls per second and latency, through the Caller and through HTTP.
    Streams {
        /// Calls in flight.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Length of each measured run.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redis: BenchRedisArgs,
        #[command(flatten)]
        streams: BenchStreamsArgs,
    },
    /// Product reads per second and latency: cache hits over HTTP and
    /// direct, the database alone, and reads while Redis is down.
    Cache {
        /// Reads in flight.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Length of each of the four measured runs.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Use this Redis instead of starting one (the outage is then
        /// measured against a closed port, as this one cannot be killed).
        #[arg(long)]
        redis_url: Option<String>,
        /// Put the in-process L1 in front of Redis in the cached paths (off
        /// by default, as in the api); outage reads may then be L1 hits.
        #[arg(long)]
        l1: bool,
    },
    /// Enqueue and drain rates of no-op jobs.
    Jobs {
        /// Jobs to enqueue and drain.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redis: BenchRedisArgs,
        #[command(flatten)]
        streams: BenchStreamsArgs,
    },
    /// Cost of the metrics pipeline: one counter increment and one
    /// histogram record (2 threads), one flush and one exporter scrape of
    /// 10,000 series.
    Metrics {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Use this Redis instead of starting one (keys under a random
        /// `bench…` prefix, expiring after 30 minutes).
        #[arg(long)]
        redis_url: Option<String>,
    },
}

/// The Redis a stream benchmark runs against.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct BenchRedisArgs {
    /// Use this Redis instead of starting one: any URL a role takes
    /// (rediss://, redis+sentinel://…, redis+cluster://…).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// PEM CA file that signed a rediss:// server's certificate.
    #[arg(long)]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate for mutual TLS (with --redis-client-key).
    #[arg(long)]
    pub redis_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(long)]
    pub redis_client_key: Option<std::path::PathBuf>,
    /// Accept any server certificate (development only).
    #[arg(long)]
    pub redis_tls_insecure: bool,
}

impl BenchRedisArgs {
    /// The TLS settings given.
    pub fn tls(&self) -> holdfast_redis::TlsOptions {
        holdfast_redis::TlsOptions {
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
            insecure: self.redis_tls_insecure,
        }
    }
}

/// How a stream benchmark sends its requests.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct BenchStreamsArgs {
    /// Durability of every request: none, fsync or replicas:N.
    #[arg(long, default_value = "none")]
    pub durability: holdfast_core::Durability,
    /// Partitions of the topic (spread over a cluster's primaries).
    #[arg(long, default_value_t = Topic::DEFAULT_PARTITIONS)]
    pub partitions: u16,
}

/// Parses a database URL, checking its scheme.
pub fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(raw).map_err(|err| err.to_string())
}

pub use holdfast_core::parse_duration;

/// The product read delay `holdfast up` gives its api, so the demo shows
/// what the cache saves.
pub const UP_PRODUCTS_DB_DELAY: Duration = Duration::from_millis(1500);

/// `port` on the loopback interface: `holdfast up` serves this machine only.
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port)
}

/// A duration as a flag's default is written (`250ms`, `5s`), read back by
/// [`parse_duration`] as the same value, so a default written once as a
/// `Duration` constant shows in `--help` as people write it.
pub use holdfast_core::format_duration as duration_text;

// Command lines: a role's arguments written back as the flags that parse to
// them. The chaos stack starts every role process through these, and the
// round-trip test below holds them to the parser, so a renamed flag or
// field fails to compile or fails that test, never a scenario at run time.

/// A command line being written: the subcommand, then flags and their
/// values, each as its own argument.
struct CommandLine(Vec<String>);

impl CommandLine {
    /// `holdfast <command>` with the flags every role shares.
    fn role(command: &str, redis: &RedisArgs, metrics: &MetricsSinkArgs) -> Self {
        Self::with_redis(command, redis)
            .duration("--metrics-flush-interval", metrics.metrics_flush_interval)
            .switch("--no-metrics-sink", metrics.no_metrics_sink)
    }

    /// `holdfast <command>` with the Redis flags.
    fn with_redis(command: &str, redis: &RedisArgs) -> Self {
        CommandLine(vec![command.to_owned()])
            .optional("--redis-url", redis.redis_url.as_ref())
            .optional("--redis-host", redis.redis_host.as_ref())
            .optional("--redis-port", redis.redis_port)
            .optional("--redis-username", redis.redis_username.as_ref())
            .optional("--redis-password", redis.redis_password.as_ref())
            .optional("--redis-db", redis.redis_db)
            .flag("--redis-tls", redis.redis_tls)
            .optional(
                "--redis-ca-file",
                redis.redis_ca_file.as_ref().map(|p| p.display()),
            )
            .optional(
                "--redis-client-cert",
                redis.redis_client_cert.as_ref().map(|p| p.display()),
            )
            .optional(
                "--redis-client-key",
                redis.redis_client_key.as_ref().map(|p| p.display()),
            )
            .switch("--redis-tls-insecure", redis.redis_tls_insecure)
            .flag("--redis-enabled", redis.redis_enabled)
            .flag("--key-prefix", &redis.key_prefix)
            .flag("--partitions", redis.partitions)
    }

    /// The settings of `auth` that are not secrets: API keys and the JWT
    /// secret go in the environment, where other users of the machine
    /// cannot read them.
    fn auth(self, auth: &AuthArgs) -> Self {
        self.optional(
            "--jwt-public-key",
            auth.jwt_public_key
                .as_ref()
                .map(|p| p.display().to_string()),
        )
        .optional("--jwt-issuer", auth.jwt_issuer.as_ref())
        .optional("--jwt-audience", auth.jwt_audience.as_ref())
    }

    /// The connection limits of a public listener.
    fn connections(self, limits: &ConnectionArgs) -> Self {
        self.duration("--header-timeout", limits.header_timeout)
            .duration("--body-timeout", limits.body_timeout)
            .flag("--max-connections", limits.max_connections)
            .flag("--rate-limit", limits.rate_limit)
            .flag("--rate-limit-burst", limits.rate_limit_burst)
    }

    fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.0.push(name.to_owned());
        self.0.push(value.to_string());
        self
    }

    /// A flag whose value is a duration, written as its parser reads it.
    fn duration(self, name: &str, value: Duration) -> Self {
        self.flag(name, duration_text(value))
    }

    /// A flag that takes no value, given when `on`.
    fn switch(mut self, name: &str, on: bool) -> Self {
        if on {
            self.0.push(name.to_owned());
        }
        self
    }

    /// A flag written only when it has a value.
    fn optional(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(value) => self.flag(name, value),
            None => self,
        }
    }

    fn into_args(self) -> Vec<String> {
        self.0
    }
}

/// The arguments of `holdfast <command>` with no flag given and no
/// environment variable read: the role's built-in defaults.
fn defaults_of<T: FromArgMatches>(command: &str) -> Result<T, clap::Error> {
    // This process's environment (a DATABASE_URL in the shell of a person
    // running `chaos run`) belongs to this process, not to the roles it
    // starts, which get every value on their command line.
    let matches = Cli::command()
        .mut_subcommand(command, |role| {
            role.mut_args(|arg| arg.env(None::<&'static str>))
        })
        .try_get_matches_from(["holdfast", command])?;
    match matches.subcommand() {
        Some((name, args)) if name == command => T::from_arg_matches(args),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            format!("{command} parsed as another command"),
        )),
    }
}

impl WorkerArgs {
    /// What `holdfast worker` runs with when given no flags and no environment variables.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults_of("worker")
    }

    /// The command line (`worker --redis-url …`) that parses to these
    /// arguments.
    pub fn command_line(&self) -> Vec<String> {
        CommandLine::role("worker", &self.redis, &self.metrics)
            .flag("--admin-listen", self.admin_listen)
            .flag("--topic", &self.topic)
            .flag("--concurrency", self.concurrency)
            .optional("--consumer-name", self.consumer_name.as_ref())
            .duration("--processing-time", self.processing_time)
            .duration("--claim-timeout", self.claim_timeout)
            .flag("--max-deliveries", self.max_deliveries)
            .duration("--drain-timeout", self.drain_timeout)
            .duration("--stall-after", self.stall_after)
            .into_args()
    }
}

impl IngressArgs {
    /// What `holdfast ingress` runs with when given no flags and no environment variables.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults_of("ingress")
    }

    /// The command line (`ingress --redis-url …`) that parses to these
    /// arguments.
    pub fn command_line(&self) -> Vec<String> {
        CommandLine::role("ingress", &self.redis, &self.metrics)
            .connections(&self.connections)
            .auth(&self.auth)
            .flag("--listen", self.listen)
            .flag("--admin-listen", self.admin_listen)
            .flag("--topic", &self.topic)
            .duration("--default-timeout", self.default_timeout)
            .flag("--backlog-limit", self.backlog_limit)
            .flag("--body-limit", self.body_limit)
            .flag("--durability", self.durability)
            .flag("--admission", self.admission)
            .duration("--max-queue-wait", self.max_queue_wait)
            .into_args()
    }
}

impl ApiArgs {
    /// What `holdfast api` runs with when given no flags and no environment variables.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults_of("api")
    }

    /// The command line (`api --redis-url …`) that parses to these
    /// arguments.
    pub fn command_line(&self) -> Vec<String> {
        CommandLine::role("api", &self.redis, &self.metrics)
            .connections(&self.connections)
            .auth(&self.auth)
            .flag("--listen", self.listen)
            .flag("--admin-listen", self.admin_listen)
            .flag("--database-url", self.database_url.expose())
            .duration("--products-db-delay", self.products_db_delay)
            .duration("--cache-ttl", self.cache_ttl)
            .flag("--warm-products", self.warm_products)
            .flag("--body-limit", self.body_limit)
            .optional("--users-base-url", self.users_base_url.as_ref())
            .into_args()
    }
}

impl ExporterArgs {
    /// What `holdfast exporter` runs with when given no flags and no
    /// environment variables.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults_of("exporter")
    }

    /// The command line (`exporter --redis-url …`) that parses to these
    /// arguments.
    pub fn command_line(&self) -> Vec<String> {
        CommandLine::with_redis("exporter", &self.redis)
            .flag("--listen", self.listen)
            .optional("--topics", self.topics.as_ref().map(|t| t.join(",")))
            .into_args()
    }
}

impl DashboardArgs {
    /// What `holdfast dashboard` runs with when given no flags and no
    /// environment variables.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults_of("dashboard")
    }

    /// The command line (`dashboard --redis-url …`) that parses to these
    /// arguments, except the token: that goes in the environment
    /// (`HOLDFAST_DASHBOARD_TOKEN`), where other users of the machine cannot
    /// read it.
    pub fn command_line(&self) -> Vec<String> {
        CommandLine::with_redis("dashboard", &self.redis)
            .flag("--listen", self.listen)
            .optional("--control-url", self.control_url.as_ref())
            .into_args()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_defaults_to_an_sqlite_file_under_data() {
        let cli = Cli::try_parse_from(["holdfast", "api"]).unwrap();
        let Command::Api(args) = cli.command else {
            panic!("not the api command");
        };
        assert_eq!(
            args.database_url.expose(),
            "sqlite://./data/holdfast.db?mode=rwc"
        );
        assert_eq!(args.products_db_delay, Duration::ZERO);
        assert!(parse_database_url("redis://localhost").is_err());
    }

    #[test]
    fn durations_written_as_defaults_read_back_as_the_same_value() {
        // Every duration default the flags show, as `--help` writes it.
        let defaults = [
            SinkConfig::DEFAULT_INTERVAL,
            IngressSettings::DEFAULT_TIMEOUT,
            ApiSettings::DEFAULT_PRODUCTS_DB_DELAY,
            ApiSettings::DEFAULT_CACHE_TTL,
            WorkerSettings::DEFAULT_PROCESSING_TIME,
            WorkerConfig::DEFAULT_CLAIM_TIMEOUT,
            WorkerConfig::DEFAULT_DRAIN_TIMEOUT,
            WorkerConfig::DEFAULT_STALL_AFTER,
            UP_PRODUCTS_DB_DELAY,
        ];
        for duration in defaults {
            assert_eq!(parse_duration(&duration_text(duration)), Ok(duration));
        }
    }

    fn parsed(command_line: Vec<String>) -> Command {
        Cli::try_parse_from(std::iter::once("holdfast".to_owned()).chain(command_line))
            .expect("a written command line parses")
            .command
    }

    fn redis_args() -> RedisArgs {
        RedisArgs {
            redis_url: Some("redis://:secret@127.0.0.1:7001/2".into()),
            redis_host: Some("cache.internal".into()),
            redis_port: Some(6380),
            redis_username: Some("holdfast".into()),
            redis_password: None,
            redis_db: Some(3),
            redis_tls: true,
            redis_ca_file: Some("/etc/ssl/redis-ca.pem".into()),
            redis_client_cert: None,
            redis_client_key: None,
            redis_tls_insecure: true,
            redis_enabled: false,
            key_prefix: "other".into(),
            partitions: 4,
        }
    }

    fn connection_args() -> ConnectionArgs {
        ConnectionArgs {
            header_timeout: Duration::from_secs(7),
            body_timeout: Duration::from_millis(1500),
            max_connections: 77,
            rate_limit: 0,
            rate_limit_burst: 9,
        }
    }

    /// The settings of authentication a command line carries (secrets go
    /// in the environment).
    fn auth_args() -> AuthArgs {
        AuthArgs {
            jwt_public_key: Some("/etc/holdfast/jwt.pem".into()),
            jwt_issuer: Some("https://issuer.example".into()),
            jwt_audience: Some("holdfast".into()),
            ..AuthArgs::default()
        }
    }

    fn sink_args() -> MetricsSinkArgs {
        MetricsSinkArgs {
            metrics_flush_interval: Duration::from_millis(750),
            no_metrics_sink: true,
        }
    }

    #[test]
    fn a_written_command_line_parses_back_to_the_same_arguments() {
        let listen: SocketAddr = "127.0.0.1:7100".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        let worker = WorkerArgs {
            redis: redis_args(),
            metrics: sink_args(),
            admin_listen: admin,
            topic: "orders".into(),
            concurrency: 3,
            consumer_name: Some("worker-9".into()),
            processing_time: Duration::from_millis(7),
            claim_timeout: Duration::from_millis(1500),
            max_deliveries: 9,
            drain_timeout: Duration::from_secs(3),
            stall_after: Duration::from_secs(11),
        };
        assert!(matches!(parsed(worker.command_line()), Command::Worker(back) if back == worker));
        let ingress = IngressArgs {
            redis: redis_args(),
            metrics: sink_args(),
            connections: connection_args(),
            auth: auth_args(),
            listen,
            admin_listen: admin,
            topic: "orders".into(),
            default_timeout: Duration::from_millis(2500),
            backlog_limit: 0,
            body_limit: 1024,
            durability: holdfast_core::Durability::Replicas(2),
            admission: false,
            max_queue_wait: Duration::from_millis(250),
        };
        assert!(
            matches!(parsed(ingress.command_line()), Command::Ingress(back) if back == ingress)
        );
        let api = ApiArgs {
            redis: redis_args(),
            metrics: sink_args(),
            connections: connection_args(),
            auth: auth_args(),
            listen,
            admin_listen: admin,
            database_url: parse_database_url("postgres://u:p@127.0.0.1:5432/db").unwrap(),
            products_db_delay: Duration::from_millis(20),
            cache_ttl: Duration::from_secs(9),
            warm_products: 0,
            body_limit: 2048,
            users_base_url: Some("http://users:5001".to_owned()),
        };
        assert!(matches!(parsed(api.command_line()), Command::Api(back) if back == api));
        let exporter = ExporterArgs {
            redis: redis_args(),
            listen,
            topics: Some(vec!["orders".into(), "weather".into()]),
        };
        assert!(
            matches!(parsed(exporter.command_line()), Command::Exporter(back) if back == exporter)
        );
        let dashboard = DashboardArgs {
            redis: redis_args(),
            listen,
            control_url: None,
            token: None,
        };
        assert!(
            matches!(parsed(dashboard.command_line()), Command::Dashboard(back) if back == dashboard)
        );
    }

    #[test]
    fn the_defaults_of_a_role_are_its_settings_defaults() {
        let worker = WorkerArgs::defaults().unwrap();
        assert_eq!(worker.concurrency, WorkerConfig::DEFAULT_CONCURRENCY);
        assert_eq!(worker.claim_timeout, WorkerConfig::DEFAULT_CLAIM_TIMEOUT);
        assert_eq!(worker.admin_listen, WorkerSettings::DEFAULT_ADMIN_LISTEN);
        let ingress = IngressArgs::defaults().unwrap();
        assert_eq!(ingress.listen, IngressSettings::DEFAULT_LISTEN);
        assert_eq!(ingress.default_timeout, IngressSettings::DEFAULT_TIMEOUT);
        let api = ApiArgs::defaults().unwrap();
        assert_eq!(api.cache_ttl, ApiSettings::DEFAULT_CACHE_TTL);
        assert_eq!(api.body_limit, ApiSettings::DEFAULT_BODY_LIMIT);
    }

    #[test]
    fn the_redis_url_is_built_from_its_parts_when_not_given() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["holdfast", "worker"].iter().chain(args.iter()).copied())
                    .unwrap();
            let Command::Worker(worker) = cli.command else {
                panic!("not the worker command");
            };
            worker.redis
        };
        assert_eq!(parse(&[]).url(), RedisConfig::DEFAULT_URL);
        let parts = parse(&[
            "--redis-host",
            "cache.internal",
            "--redis-port",
            "6380",
            "--redis-username",
            "app",
            "--redis-password",
            "p@ss:w/rd",
            "--redis-db",
            "2",
            "--redis-tls",
            "true",
        ]);
        assert_eq!(
            parts.url(),
            "rediss://app:p%40ss%3Aw%2Frd@cache.internal:6380/2"
        );
        let mut both = parts.clone();
        both.redis_url = Some("redis://other:1/".into());
        assert_eq!(both.url(), "redis://other:1/", "the URL wins");
        assert_eq!(
            parse(&["--redis-host", "::1"]).url(),
            "redis://[::1]:6379/0"
        );
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
