//! Turning command-line arguments into role settings, and `holdfast up`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use holdfast_core::{Keys, Topic};
use holdfast_redis::local::{LocalRedis, LocalRedisOptions};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_resilience::Tasks;
use holdfast_services::api::{Api, ApiSettings, DatabaseUrl};
use holdfast_services::dashboard::{Dashboard, DashboardSettings};
use holdfast_services::exporter::{Exporter, ExporterSettings};
use holdfast_services::ingress::{Ingress, IngressSettings};
use holdfast_services::worker::{WorkerRole, WorkerSettings};
use holdfast_streams::{Admin, WorkerConfig};
use tokio_util::sync::CancellationToken;

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
    let mut cfg = RedisConfig::new(args.redis_url.clone());
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
    Ok(settings)
}

/// Settings of the api from its arguments.
pub fn api_settings(args: &ApiArgs) -> ApiSettings {
    let mut settings = ApiSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.admin_listen = Some(args.admin_listen);
    settings.database_url = args.database_url.clone();
    settings.products_db_delay = args.products_db_delay;
    settings.cache.prefix = args.redis.key_prefix.clone();
    settings.cache.ttl = args.cache_ttl;
    settings.warm_products = args.warm_products;
    settings.stack.body_limit = args.body_limit;
    settings
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
    let api = Api::build(api_settings(&args)).await.with_context(|| {
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
    tracing::info!(port = exporter.port(), redis = %redact(&args.redis.redis_url), "exporter listening");
    exporter.run_until_stopped(shutdown).await?;
    Ok(())
}

/// Settings of the dashboard from its arguments.
pub fn dashboard_settings(args: &DashboardArgs) -> DashboardSettings {
    let mut settings = DashboardSettings::new(redis_config(&args.redis));
    settings.listen = args.listen;
    settings.keys = Keys::new(args.redis.key_prefix.clone());
    settings
}

/// `holdfast dashboard`.
pub async fn dashboard(args: DashboardArgs, shutdown: CancellationToken) -> Result<()> {
    let dashboard = Dashboard::build(dashboard_settings(&args))
        .await
        .with_context(|| format!("could not start the dashboard on {}", args.listen))?;
    tracing::info!(port = dashboard.port(), redis = %redact(&args.redis.redis_url), "dashboard listening");
    dashboard.run_until_stopped(shutdown).await?;
    Ok(())
}

/// The banner lines of an HTTP role of `up`, labelled by `labels`: where
/// it answers (`host`, `port`), its Swagger UI, and its admin listener's
/// metrics if it has one.
fn print_http_role(labels: [&str; 3], (host, port): (IpAddr, u16), admin: Option<(IpAddr, u16)>) {
    let [role, swagger_ui, role_admin] = labels;
    let base = url(host, port);
    println!("  {role:<16}{base}");
    println!("  {swagger_ui:<16}{base}/swagger-ui/");
    if let Some((admin_host, admin_port)) = admin {
        println!("  {role_admin:<16}{}/metrics", url(admin_host, admin_port));
    }
}

/// `http://host:port`, an IPv6 host in brackets.
fn url(host: IpAddr, port: u16) -> String {
    format!("http://{}", std::net::SocketAddr::new(host, port))
}

/// `holdfast up`: the demo stack in one process. Its roles are built from
/// the library settings types, so they run with the same defaults as the
/// role commands; only what `up` changes (loopback listeners, the demo's
/// database and delay, the processing time) is set here.
pub async fn up(
    args: UpArgs,
    shutdown: CancellationToken,
    forced_exit: crate::ForcedExit,
) -> Result<()> {
    let mut private = None;
    let redis_url = match &args.redis_url {
        Some(url) => url.clone(),
        None => {
            let server = LocalRedis::start(LocalRedisOptions {
                aof: true,
                appendfsync: Some("everysec".into()),
                ..LocalRedisOptions::default()
            })
            .await
            .context(
                "could not start a private redis-server (set REDIS_URL to use an existing Redis)",
            )?;
            let url = server.url();
            if let Some(pid) = server.pid() {
                // A second Ctrl-C exits at once, skipping destructors: it
                // must not leave this redis-server behind.
                forced_exit.kill_on_exit(pid);
            }
            private = Some(server);
            url
        }
    };
    let redis = RedisConfig::new(redis_url.clone());
    let mut ingress_settings = IngressSettings::new(redis.clone());
    ingress_settings.listen = args.listen;
    ingress_settings.admin_listen = Some(args.admin_listen);
    let ingress = Ingress::build(ingress_settings).await.with_context(|| {
        format!(
            "could not bind {} or {} (is another holdfast running?)",
            args.listen, args.admin_listen
        )
    })?;
    // Without DATABASE_URL the demo gets a fresh SQLite file of its own,
    // removed on exit, so runs never share or leave state.
    let (database_url, scratch_dir) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("holdfast-up-{}", std::process::id()));
            (
                DatabaseUrl::sqlite_file(&dir.join("holdfast.db")),
                Some(dir),
            )
        }
    };
    let mut api_settings = ApiSettings::new(redis.clone());
    api_settings.listen = args.api_listen;
    api_settings.admin_listen = Some(args.api_admin_listen);
    api_settings.database_url = database_url;
    api_settings.products_db_delay = args.products_db_delay;
    let api = Api::build(api_settings).await.with_context(|| {
        format!(
            "could not start the api on {} or {} (is another holdfast running?)",
            args.api_listen, args.api_admin_listen
        )
    })?;
    let mut dashboard_settings = DashboardSettings::new(redis.clone());
    dashboard_settings.listen = args.dashboard_listen;
    let dashboard = Dashboard::build(dashboard_settings)
        .await
        .with_context(|| {
            format!(
                "could not start the dashboard on {} (is another holdfast running?)",
                args.dashboard_listen
            )
        })?;
    let mut workers = Vec::new();
    for n in 0..args.workers.max(1) {
        let mut admin = args.worker_admin_listen;
        if n > 0 {
            admin.set_port(0);
        }
        let mut worker_settings = WorkerSettings::new(
            redis.clone(),
            Keys::default(),
            topic(WorkerSettings::DEFAULT_TOPIC)?,
        );
        worker_settings.admin_listen = admin;
        worker_settings.processing_time = args.processing_time;
        let role = WorkerRole::build(worker_settings)
            .await
            .with_context(|| format!("could not bind {admin}"))?;
        workers.push(role);
    }

    // Print the banner only once the stack can answer, so the first request
    // a person sends after reading it succeeds.
    let mut ready = ingress.redis().wait_ready(Duration::from_secs(10)).await;
    ready &= api.redis().wait_ready(Duration::from_secs(10)).await;
    for w in &workers {
        ready &= w.redis().wait_ready(Duration::from_secs(10)).await;
    }
    if !ready {
        tracing::warn!("redis is not answering yet; requests get 503 until it does");
    }
    let host = args.listen.ip();
    println!("holdfast is up");
    print_http_role(
        ["ingress", "swagger ui", "ingress admin"],
        (host, ingress.port()),
        ingress
            .admin_port()
            .map(|port| (args.admin_listen.ip(), port)),
    );
    let api_host = args.api_listen.ip();
    print_http_role(
        ["api", "api swagger ui", "api admin"],
        (api_host, api.port()),
        api.admin_port()
            .map(|port| (args.api_admin_listen.ip(), port)),
    );
    for (n, w) in workers.iter().enumerate() {
        println!(
            "  worker {} admin  {}/health",
            n + 1,
            url(args.worker_admin_listen.ip(), w.admin_port())
        );
    }
    println!(
        "  dashboard       {}/",
        url(args.dashboard_listen.ip(), dashboard.port())
    );
    match &private {
        Some(server) => println!(
            "  redis           redis://127.0.0.1:{} (private; stopped on exit)",
            server.port()
        ),
        None => println!("  redis           {}", redact(&redis_url)),
    }
    println!();
    println!(
        "  try: curl -s -X POST {}/WeatherForecast/city -H 'content-type: application/json' -d '{{\"city\": \"New York\", \"location\": \"Downtown\"}}'",
        url(host, ingress.port())
    );
    println!(
        "  try: curl -si {}/api/products/500   (twice: first from the database, ~{} ms, then from the cache)",
        url(api_host, api.port()),
        args.products_db_delay.as_millis()
    );
    println!(
        "       products 1-{} were warmed into the cache at start: their first read is already a hit",
        ApiSettings::DEFAULT_WARM_PRODUCTS
    );
    println!("Press Ctrl-C to stop.");

    // One sink for the whole process: every role records into the same
    // process-wide registry.
    let sink = Sink::start(redis, Keys::DEFAULT_PREFIX, &args.metrics)?;

    // The ingress and the api drain first, together, while the workers
    // still answer what the ingress has in flight; then the workers drain.
    let workers_stop = CancellationToken::new();
    let mut workers_tasks = tokio::task::JoinSet::new();
    for w in workers {
        workers_tasks.spawn(w.run_until_stopped(workers_stop.clone()));
    }
    let (ingress_result, api_result, dashboard_result) = tokio::join!(
        ingress.run_until_stopped(shutdown.clone()),
        api.run_until_stopped(shutdown.clone()),
        dashboard.run_until_stopped(shutdown.clone())
    );
    workers_stop.cancel();
    if let Err(err) = dashboard_result {
        tracing::error!(%err, "the dashboard stopped with an error");
    }
    if let Err(err) = ingress_result {
        tracing::error!(%err, "the ingress stopped with an error");
    }
    if let Err(err) = api_result {
        tracing::error!(%err, "the api stopped with an error");
    }
    while let Some(result) = workers_tasks.join_next().await {
        if let Err(err) = result.context("a worker task failed")? {
            tracing::error!(%err, "a worker stopped with an error");
        }
    }
    Sink::finish(sink).await;
    if let Some(mut server) = private {
        server.stop().await;
    }
    if let Some(dir) = scratch_dir
        && let Err(err) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(%err, dir = %dir.display(), "could not remove the demo database");
    }
    println!("holdfast stopped");
    Ok(())
}

/// Hides the password of a Redis URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

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
        redact(&redis_args.redis_url)
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

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(super::redact("redis://host:6379"), "redis://host:6379");
    }
}
