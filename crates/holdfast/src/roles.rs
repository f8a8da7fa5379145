//! Turning command-line arguments into role settings, and `holdfast up`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use holdfast_chaos::faults::SharedStack;
use holdfast_chaos::scenario::{Durability, StackSpec};
use holdfast_chaos::stack::{
    DASHBOARD_TOKEN_ENV, DashboardPlan, Launcher, RedisSource, RoleMetrics, Stack, StackLayout,
};
use holdfast_chaos::stack_control::StackControl;
use holdfast_chaos::supervisor::{EventLog, supervise};
use holdfast_core::{Keys, Topic};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_resilience::Tasks;
use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_services::dashboard::{Dashboard, DashboardSettings};
use holdfast_services::exporter::{Exporter, ExporterSettings};
use holdfast_services::ingress::{Ingress, IngressSettings};
use holdfast_services::worker::{WorkerRole, WorkerSettings};
use holdfast_store::Backend;
use holdfast_streams::{Admin, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::chaos_cmd::CliCommandLines;
use crate::cli::{
    ApiArgs, DashboardArgs, DeadLetterCommand, ExporterArgs, IngressArgs, MetricsSinkArgs,
    RedisArgs, UpArgs, WorkerArgs,
};

/// This process's metrics sink: flushes the process-wide registry to Redis
/// until [`Sink::finish`], which makes a last flush once the roles have
/// stopped, so their final figures are not lost.
struct Sink {
    stop: CancellationToken,
    /// The owner of the sink's own Redis handle, stopped after the flush.
    redis_tasks: Tasks,
    task: tokio::task::JoinHandle<()>,
}

/// How long a command or the sink waits for its Redis handle's tasks.
const REDIS_TASKS_GRACE: Duration = Duration::from_secs(2);

impl Sink {
    /// Runs `role`, started with `redis` and `metrics`, with its sink
    /// beside it, and makes the last flush once the role has stopped.
    async fn run_beside(
        redis: &RedisArgs,
        metrics: &MetricsSinkArgs,
        role: impl Future<Output = std::io::Result<()>>,
    ) -> Result<()> {
        let sink = Self::start(redis_config(redis), &redis.key_prefix, metrics)?;
        let result = role.await;
        Self::finish(sink).await;
        Ok(result?)
    }

    /// Starts the sink unless it is switched off or Redis is disabled.
    fn start(
        redis: RedisConfig,
        key_prefix: &str,
        metrics: &MetricsSinkArgs,
    ) -> Result<Option<Sink>> {
        if metrics.no_metrics_sink || !redis.enabled {
            return Ok(None);
        }
        // Its own Redis handle, stopped only after the last flush.
        let redis_tasks = Tasks::new();
        let handle = Redis::start(redis, &redis_tasks)
            .context("invalid Redis settings for the metrics sink")?;
        let cfg = holdfast_telemetry::sink::SinkConfig {
            prefix: key_prefix.to_owned(),
            interval: metrics
                .metrics_flush_interval
                .max(Duration::from_millis(100)),
            ..holdfast_telemetry::sink::SinkConfig::default()
        };
        tracing::debug!(instance = %cfg.instance, interval = ?cfg.interval, "metrics sink started");
        let stop = CancellationToken::new();
        let task = holdfast_telemetry::sink::MetricsSink::start(
            handle,
            holdfast_telemetry::sink_registry(),
            cfg,
            stop.clone(),
        );
        Ok(Some(Sink {
            stop,
            redis_tasks,
            task,
        }))
    }

    /// Makes the last flush (bounded) and stops.
    async fn finish(sink: Option<Sink>) {
        if let Some(sink) = sink {
            sink.stop.cancel();
            let _ = sink.task.await;
            sink.redis_tasks.stop_and_wait(REDIS_TASKS_GRACE).await;
        }
    }
}

fn redis_config(args: &RedisArgs) -> RedisConfig {
    if args.redis_url.is_none()
        && args.redis_host.is_none()
        && (args.redis_port.is_some()
            || args.redis_username.is_some()
            || args.redis_password.is_some()
            || args.redis_db.is_some()
            || args.redis_tls)
    {
        tracing::warn!(
            "REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD, REDIS_DB or REDIS_TLS is set without REDIS_HOST: they are ignored, and {} is used",
            RedisConfig::DEFAULT_URL
        );
    }
    let mut cfg = RedisConfig::new(args.url());
    cfg.tls = args.tls();
    cfg.enabled = args.redis_enabled;
    cfg
}

fn topic(name: &str) -> Result<Topic> {
    Topic::parse(name).with_context(|| format!("invalid --topic {name:?}"))
}

/// Settings of the ingress from its arguments.
pub fn ingress_settings(args: &IngressArgs) -> Result<IngressSettings> {
    let mut settings = IngressSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.admin_listen = Some(args.admin_listen);
    settings.keys = Keys::new(args.redis.key_prefix.clone());
    settings.partitions = args.redis.partitions;
    settings.topic = topic(&args.topic)?;
    settings.default_timeout = args.default_timeout;
    settings.backlog_limit = (args.backlog_limit > 0).then_some(args.backlog_limit);
    settings.stack = IngressSettings::stack_for(settings.max_timeout, args.body_limit);
    args.connections
        .apply(&mut settings.stack)
        .map_err(anyhow::Error::msg)?;
    args.auth
        .apply(&mut settings.stack)
        .map_err(anyhow::Error::msg)?;
    settings.durability = args.durability;
    settings.admission = args.admission;
    settings.max_queue_wait = (!args.max_queue_wait.is_zero()).then_some(args.max_queue_wait);
    Ok(settings)
}

/// Settings of the api from its arguments.
pub fn api_settings(args: &ApiArgs) -> Result<ApiSettings> {
    let mut settings = ApiSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.admin_listen = Some(args.admin_listen);
    settings.database_url = args.database_url.clone();
    settings.products_db_delay = args.products_db_delay;
    settings.cache.prefix = args.redis.key_prefix.clone();
    settings.cache.ttl = args.cache_ttl;
    settings.warm_products = args.warm_products;
    settings.stack.body_limit = args.body_limit;
    args.connections
        .apply(&mut settings.stack)
        .map_err(anyhow::Error::msg)?;
    args.auth
        .apply(&mut settings.stack)
        .map_err(anyhow::Error::msg)?;
    settings.users_base_url = args.users_base_url.clone();
    Ok(settings)
}

/// Settings of a worker from its arguments.
pub fn worker_settings(args: &WorkerArgs) -> Result<WorkerSettings> {
    let mut worker = WorkerConfig::new(
        Keys::new(args.redis.key_prefix.clone()),
        topic(&args.topic)?,
    );
    worker.partitions = args.redis.partitions;
    worker.concurrency = args.concurrency.max(1);
    if let Some(name) = &args.consumer_name {
        worker.consumer = name.clone();
    }
    // Below this, claims of running handlers could not be refreshed in
    // time and requests would bounce between workers.
    anyhow::ensure!(
        args.claim_timeout >= Duration::from_millis(500),
        "--claim-timeout must be at least 500ms (got {:?})",
        args.claim_timeout
    );
    worker.claim_timeout = args.claim_timeout;
    worker.retry_delay = worker.retry_delay.min(args.claim_timeout / 2);
    worker.max_deliveries = args.max_deliveries.max(1);
    worker.drain_timeout = args.drain_timeout;
    worker.stall_after = args.stall_after;
    Ok(WorkerSettings {
        admin_listen: args.admin_listen,
        redis: redis_config(&args.redis),
        worker,
        processing_time: args.processing_time,
    })
}

/// `holdfast config show [ROLE]`: each setting with where its value
/// comes from. A role's settings are first built as the role builds them
/// at start, so what the role would refuse is refused here too.
pub fn show_config(
    args: crate::cli::ShowArgs,
    invocation: &crate::config_file::Invocation,
) -> Result<()> {
    let role = match args.role.as_deref() {
        Some(role) => Some(checked_role(role)?),
        None => None,
    };
    print!("{}", invocation.show(role)?);
    Ok(())
}

/// The name of the role `config show` was given, once its settings build.
fn checked_role(role: &crate::cli::ShowRole) -> Result<&'static str> {
    use crate::cli::ShowRole;
    Ok(match role {
        ShowRole::Api(args) => {
            api_settings(args)?;
            "api"
        }
        ShowRole::Ingress(args) => ingress_settings(args).map(|_| "ingress")?,
        ShowRole::Worker(args) => worker_settings(args).map(|_| "worker")?,
        ShowRole::Exporter(args) => exporter_settings(args).map(|_| "exporter")?,
        ShowRole::Dashboard(args) => {
            dashboard_settings(args);
            "dashboard"
        }
    })
}

/// `holdfast ingress`.
pub async fn ingress(args: IngressArgs, shutdown: CancellationToken) -> Result<()> {
    let settings = ingress_settings(&args)?;
    let ingress = Ingress::build(settings).await.with_context(|| {
        format!(
            "could not start the ingress on {} and {}",
            args.listen, args.admin_listen
        )
    })?;
    tracing::info!(port = ingress.port(), admin_port = ?ingress.admin_port(), "ingress listening");
    Sink::run_beside(
        &args.redis,
        &args.metrics,
        ingress.run_until_stopped(shutdown),
    )
    .await
}

/// `holdfast api`.
pub async fn api(args: ApiArgs, shutdown: CancellationToken) -> Result<()> {
    let api = Api::build(api_settings(&args)?).await.with_context(|| {
        format!(
            "could not start the api on {} and {} with database {}",
            args.listen, args.admin_listen, args.database_url
        )
    })?;
    tracing::info!(port = api.port(), admin_port = ?api.admin_port(), "api listening");
    Sink::run_beside(&args.redis, &args.metrics, api.run_until_stopped(shutdown)).await
}

/// `holdfast worker`.
pub async fn worker(args: WorkerArgs, shutdown: CancellationToken) -> Result<()> {
    let settings = worker_settings(&args)?;
    let consumer = settings.worker.consumer.clone();
    let role = WorkerRole::build(settings).await.with_context(|| {
        format!(
            "could not start the worker with admin listener {}",
            args.admin_listen
        )
    })?;
    tracing::info!(admin_port = role.admin_port(), %consumer, topic = %args.topic, "worker started");
    Sink::run_beside(&args.redis, &args.metrics, role.run_until_stopped(shutdown)).await
}

/// Settings of the exporter from its arguments.
pub fn exporter_settings(args: &ExporterArgs) -> Result<ExporterSettings> {
    let mut settings = ExporterSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.keys = Keys::new(args.redis.key_prefix.clone());
    settings.partitions = args.redis.partitions;
    settings.topics = match &args.topics {
        Some(names) => Some(
            names
                .iter()
                .map(|name| name.trim())
                .filter(|name| !name.is_empty())
                .map(|name| {
                    Topic::parse(name).with_context(|| format!("invalid --topics entry {name:?}"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    Ok(settings)
}

/// `holdfast exporter`.
pub async fn exporter(args: ExporterArgs, shutdown: CancellationToken) -> Result<()> {
    let exporter = Exporter::build(exporter_settings(&args)?)
        .await
        .with_context(|| format!("could not start the exporter on {}", args.listen))?;
    tracing::info!(port = exporter.port(), redis = %redact(&args.redis.url()), "exporter listening");
    exporter.run_until_stopped(shutdown).await?;
    Ok(())
}

/// Settings of the dashboard from its arguments.
pub fn dashboard_settings(args: &DashboardArgs) -> DashboardSettings {
    let mut settings = DashboardSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.keys = Keys::new(args.redis.key_prefix.clone());
    settings.partitions = args.redis.partitions;
    settings.control_url.clone_from(&args.control_url);
    settings.token.clone_from(&args.token);
    settings
}

/// `holdfast dashboard`.
pub async fn dashboard(args: DashboardArgs, shutdown: CancellationToken) -> Result<()> {
    let dashboard = Dashboard::build(dashboard_settings(&args))
        .await
        .with_context(|| format!("could not start the dashboard on {}", args.listen))?;
    tracing::info!(port = dashboard.port(), redis = %redact(&args.redis.url()), "dashboard listening");
    dashboard.run_until_stopped(shutdown).await?;
    Ok(())
}

/// `http://host:port`, an IPv6 host in brackets.
fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

/// `holdfast up`: the demo stack as a small process supervisor. The stack
/// is the one `holdfast chaos run` starts (the same module, the same role
/// command lines): a private redis-server with AOF unless `REDIS_URL` is
/// given, a fault proxy in front of it unless `--no-proxy`, and every role
/// as a child process of this binary with its log captured. A role that
/// dies is started again with backoff; the dashboard plays faults through
/// the control API this process serves on a loopback port, with a token.
pub async fn up(
    args: UpArgs,
    shutdown: CancellationToken,
    forced_exit: crate::ForcedExit,
) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("holdfast-up-")
        .tempdir()
        .context("creating the stack's directory")?;
    let dir = scratch.path().to_owned();
    let redis = match (&args.redis_url, args.redis_enabled) {
        (_, false) => RedisSource::Disabled,
        (Some(url), true) => RedisSource::External(url.clone()),
        (None, true) => RedisSource::Private,
    };
    // Without DATABASE_URL the demo gets a fresh SQLite file of its own,
    // removed on exit, so runs never share or leave state. A networked
    // database goes behind the fault proxy, for "database down".
    let (database, database_url) = match &args.database_url {
        Some(url) if url.backend() == Backend::Sqlite => {
            ("sqlite".to_owned(), Some(url.expose().to_owned()))
        }
        Some(url) => (url.expose().to_owned(), None),
        None => (
            "sqlite".to_owned(),
            Some(
                DatabaseUrl::sqlite_file(&dir.join("holdfast.db"))
                    .expose()
                    .to_owned(),
            ),
        ),
    };
    let spec = StackSpec {
        workers: args.workers.max(1),
        durability: Durability::Everysec,
        topology: holdfast_chaos::scenario::Topology::Single,
        request_durability: holdfast_core::Durability::None,
        partitions: holdfast_core::Topic::DEFAULT_PARTITIONS,
        redis_password: None,
        redis_proxy: !args.no_proxy,
        database_proxy: database_url.is_none() && !args.no_proxy,
        database,
        claim_timeout: WorkerConfig::DEFAULT_CLAIM_TIMEOUT,
        cache_ttl: ApiSettings::DEFAULT_CACHE_TTL,
        processing_time: args.processing_time,
    };
    let control_listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the stack's control API on a loopback port")?;
    let control_url = url(control_listener.local_addr()?);
    let token = match std::env::var(DASHBOARD_TOKEN_ENV) {
        Ok(token) if !token.is_empty() => token,
        _ => uuid::Uuid::new_v4().simple().to_string(),
    };
    let layout = StackLayout {
        wait_ready: redis != RedisSource::Disabled,
        redis,
        ingress: args.listen,
        ingress_admin: args.admin_listen,
        api: args.api_listen,
        api_admin: args.api_admin_listen,
        worker_admin: args.worker_admin_listen,
        exporter: Some(args.exporter_listen),
        dashboard: Some(DashboardPlan {
            listen: args.dashboard_listen,
            control: Some((control_url.clone(), token.clone())),
        }),
        database_url,
        products_db_delay: Some(args.products_db_delay),
        metrics: Some(RoleMetrics {
            flush_interval: args.metrics.metrics_flush_interval,
            sink: !args.metrics.no_metrics_sink,
        }),
    };
    let launcher = Launcher {
        bin: std::env::current_exe().context("finding the holdfast binary")?,
        command_line: Arc::new(CliCommandLines),
    };
    let log_dir = args.log_dir.clone().unwrap_or_else(|| dir.clone());
    println!(
        "holdfast up: starting the stack (logs in {})",
        log_dir.join("logs").display()
    );
    let stack = tokio::select! {
        stack = Stack::start_with(&launcher, &spec, &layout, &log_dir) => stack.context(
            "the stack did not start (is another holdfast running? the log named above says more)",
        )?,
        () = shutdown.cancelled() => {
            println!("holdfast stopped before the stack was up");
            return Ok(());
        }
    };
    let banner = banner(&stack, &args, &token, &control_url);
    let stack: SharedStack = Arc::new(tokio::sync::Mutex::new(stack));
    let events = EventLog::new();
    events.push(None, "stack started");

    // The supervisor, the control API and the forced-exit list end with
    // `background`.
    let background = Tasks::new();
    background.spawn(supervise(
        stack.clone(),
        events.clone(),
        background.stop_token(),
    ));
    background.spawn(keep_pids_current(
        stack.clone(),
        forced_exit,
        background.stop_token(),
    ));
    let control = StackControl::new(stack.clone(), events, token);
    let router = control.router();
    let stop = background.stop_token();
    background.spawn(async move {
        let served = axum::serve(control_listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "the control API stopped");
        }
    });
    print!("{banner}");

    shutdown.cancelled().await;
    println!("holdfast: stopping (faults are reverted, then the roles stop, workers last)");
    control.end_all().await;
    background.stop_and_wait(REDIS_TASKS_GRACE).await;
    stack.lock().await.stop().await;
    drop(scratch);
    println!("holdfast stopped");
    Ok(())
}

/// What `up` prints once its stack is ready: where everything answers.
fn banner(stack: &Stack, args: &UpArgs, token: &str, control_url: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "holdfast is up");
    let dashboard = stack.dashboard_url.clone().unwrap_or_default();
    let _ = writeln!(out, "  dashboard       {dashboard}#token={token}");
    let _ = writeln!(out, "  ingress         {}", stack.ingress_url);
    let _ = writeln!(out, "  swagger ui      {}/swagger-ui/", stack.ingress_url);
    let _ = writeln!(out, "  api             {}", stack.api_url);
    let _ = writeln!(out, "  api swagger ui  {}/swagger-ui/", stack.api_url);
    if let Some(exporter) = &stack.exporter_url {
        let _ = writeln!(out, "  metrics         {exporter}   (every role, merged)");
    }
    for role in stack.roles() {
        let _ = writeln!(
            out,
            "  {:<16}{}/health",
            format!("{} admin", role.name),
            url(role.admin)
        );
    }
    match (&stack.redis, &args.redis_url, args.redis_enabled) {
        (_, _, false) => {
            let _ = writeln!(out, "  redis           disabled (REDIS_ENABLED=false)");
        }
        (Some(server), _, _) => {
            let _ = writeln!(
                out,
                "  redis           redis://127.0.0.1:{} (private, AOF; stopped on exit){}",
                server.port(),
                if stack.redis_proxy.is_some() {
                    "; the roles reach it through a fault proxy"
                } else {
                    ""
                }
            );
        }
        (None, Some(given), _) => {
            let _ = writeln!(out, "  redis           {}", redact(given));
        }
        (None, None, _) => {}
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  try: curl -s -X POST {}/WeatherForecast/city -H 'content-type: application/json' -d '{{\"city\": \"New York\", \"location\": \"Downtown\"}}'",
        stack.ingress_url
    );
    let _ = writeln!(
        out,
        "  try: curl -si {}/api/products/500   (twice: first from the database, ~{} ms, then from the cache)",
        stack.api_url,
        args.products_db_delay.as_millis()
    );
    let _ = writeln!(
        out,
        "       products 1-{} were warmed into the cache at start: their first read is already a hit",
        ApiSettings::DEFAULT_WARM_PRODUCTS
    );
    let _ = writeln!(
        out,
        "  the dashboard link carries the token its actions need (set {DASHBOARD_TOKEN_ENV} before `up` to choose it)"
    );
    let _ = writeln!(
        out,
        "  control API     {control_url}/stack   (Authorization: Bearer <the token>)"
    );
    let _ = writeln!(out, "Press Ctrl-C to stop.");
    out
}

/// Keeps the list of processes a forced exit kills current, as roles are
/// started again with new pids.
async fn keep_pids_current(
    stack: SharedStack,
    forced_exit: crate::ForcedExit,
    stop: CancellationToken,
) {
    loop {
        let pids = stack.lock().await.pids();
        forced_exit.set_pids(pids);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

pub use holdfast_redis::redact;

/// `holdfast dead-letters ...`.
pub async fn dead_letters(cmd: DeadLetterCommand) -> Result<()> {
    let (redis_args, topic_name) = match &cmd {
        DeadLetterCommand::List { redis, topic, .. }
        | DeadLetterCommand::Replay { redis, topic, .. }
        | DeadLetterCommand::Purge { redis, topic } => (redis.clone(), topic.clone()),
    };
    let tasks = Tasks::new();
    let redis = Redis::start(redis_config(&redis_args), &tasks)?;
    anyhow::ensure!(
        redis.wait_ready(Duration::from_secs(5)).await,
        "could not connect to {}",
        redact(&redis_args.url())
    );
    let admin = Admin::new(
        redis,
        Keys::new(redis_args.key_prefix.clone()),
        redis_args.partitions,
    );
    let topic = topic(&topic_name)?;
    match cmd {
        DeadLetterCommand::List { count, .. } => {
            for letter in admin.dead_letters(&topic, count).await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DeadLetterCommand::Replay { ids, deadline, .. } => {
            let n = admin.replay(&topic, &ids, deadline).await?;
            println!("replayed {n} dead letter(s)");
        }
        DeadLetterCommand::Purge { .. } => {
            let n = admin.purge(&topic).await?;
            println!("purged {n} dead letter(s)");
        }
    }
    tasks.stop_and_wait(REDIS_TASKS_GRACE).await;
    Ok(())
}
