//! `holdfast chaos`: the fault proxy and the scenario runner.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use holdfast_chaos::runner::{RunOptions, run as run_scenario};
use holdfast_chaos::scenario::{BUILT_IN, Scenario};
use holdfast_chaos::stack::{Launcher, RoleCommandLine, RoleLaunch, RoleMetrics};
use holdfast_services::api::DatabaseUrl;

use crate::cli::{ApiArgs, DashboardArgs, ExporterArgs, IngressArgs, MetricsSinkArgs, WorkerArgs};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// `holdfast chaos ...`.
#[derive(Subcommand, Debug)]
pub enum ChaosCommand {
    /// A TCP fault proxy with an HTTP control API: put it between a service
    /// and its Redis (or database) and add faults while it runs.
    Proxy {
        /// Where clients connect.
        #[arg(long, default_value = "127.0.0.1:16379")]
        listen: SocketAddr,
        /// Where connections are forwarded (host:port).
        #[arg(long, default_value = "127.0.0.1:6379")]
        upstream: String,
        /// The control API (`GET /proxies`, `POST /proxies/default/faults`).
        /// Anywhere but loopback it needs --token.
        #[arg(long, default_value = "127.0.0.1:8474")]
        control: SocketAddr,
        /// The token every change through the control API needs, as
        /// `Authorization: Bearer TOKEN` (reads stay open). Prefer the
        /// environment variable.
        #[arg(long, env = "HOLDFAST_CHAOS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run a scenario: start the stack, run the load, play the faults,
    /// check the invariants, write the report. Exits non-zero when an
    /// invariant fails.
    Run {
        /// A built-in scenario's name (see `holdfast chaos list`) or a
        /// scenario TOML file.
        scenario: String,
        /// The CI form: shorter load and faults.
        #[arg(long)]
        short: bool,
        /// Print one JSON object: scenario, passed, invariants, report.
        #[arg(long)]
        json: bool,
        /// Where each run writes report.json, report.html, chart.svg and
        /// the roles' logs, in a directory of its own.
        #[arg(long, default_value = "target/chaos")]
        report_dir: PathBuf,
    },
    /// List the built-in scenarios.
    List,
    /// Print a built-in scenario's TOML, to copy and edit.
    Show {
        /// Its name.
        name: String,
    },
}

/// Runs a chaos command.
pub async fn run(cmd: ChaosCommand, shutdown: CancellationToken) -> Result<()> {
    match cmd {
        ChaosCommand::Proxy {
            listen,
            upstream,
            control,
            token,
        } => {
            let token = token.filter(|t| !t.is_empty());
            if token.is_none() && !control.ip().is_loopback() {
                anyhow::bail!(
                    "the control API on {control} would let anyone who reaches it cut this \
                     proxy's connections: give it a --token (or HOLDFAST_CHAOS_TOKEN), or bind \
                     it to loopback"
                );
            }
            eprintln!(
                "chaos proxy: {listen} -> {upstream}; control API on http://{control}/proxies"
            );
            holdfast_chaos::control::serve(listen, upstream, control, token, shutdown)
                .await
                .context("running the fault proxy")
        }
        ChaosCommand::List => {
            for (name, text) in BUILT_IN {
                let scenario = Scenario::parse(name, text)?;
                println!("{name:<20} {}", scenario.description);
            }
            Ok(())
        }
        ChaosCommand::Show { name } => {
            let text = holdfast_chaos::scenario::built_in(&name).with_context(|| {
                format!("no built-in scenario {name:?}; `holdfast chaos list` shows them")
            })?;
            print!("{text}");
            Ok(())
        }
        ChaosCommand::Run {
            scenario,
            short,
            json,
            report_dir,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let opts = RunOptions {
                short,
                report_dir,
                launcher: Launcher {
                    bin: std::env::current_exe().context("finding the holdfast binary")?,
                    command_line: std::sync::Arc::new(CliCommandLines),
                },
                live: true,
            };
            let outcome = run_scenario(&scenario, &opts, shutdown).await?;
            let report = &outcome.report;
            if json {
                let invariants: Vec<_> = report
                    .invariants
                    .iter()
                    .map(
                        |i| json!({"name": i.name, "value": i.value, "limit": i.limit, "ok": i.ok}),
                    )
                    .collect();
                println!(
                    "{}",
                    json!({
                        "scenario": report.scenario,
                        "passed": report.passed,
                        "invariants": invariants,
                        "report": outcome.html_path.display().to_string(),
                    })
                );
            } else {
                println!(
                    "\n{}: {}",
                    report.scenario,
                    if report.passed { "PASSED" } else { "FAILED" }
                );
                for i in &report.invariants {
                    let compare = match i.compare {
                        holdfast_chaos::report::Compare::AtMost => "<=",
                        holdfast_chaos::report::Compare::AtLeast => ">=",
                    };
                    println!(
                        "  {} {:<34} {:>10.2} (limit {compare} {}) {}",
                        if i.ok { "ok  " } else { "FAIL" },
                        i.name,
                        i.value,
                        i.limit,
                        i.unit
                    );
                }
                for f in &report.faults {
                    println!(
                        "  fault {:<28} {:>6.1}s .. {:>6.1}s, recovered {}",
                        f.name,
                        f.start_s,
                        f.end_s.unwrap_or(report.duration_s),
                        f.recovery_s
                            .map_or("not before the end".to_owned(), |r| format!("in {r:.1}s"))
                    );
                }
                println!("  report: {}", outcome.html_path.display());
            }
            if report.passed {
                Ok(())
            } else {
                // The verdict is printed; the exit code carries it.
                std::process::exit(1);
            }
        }
    }
}

/// Writes a launch's metrics sink, if it names one, over the defaults.
fn metrics(args: &mut MetricsSinkArgs, launch: Option<RoleMetrics>) {
    if let Some(launch) = launch {
        args.metrics_flush_interval = launch.flush_interval;
        args.no_metrics_sink = !launch.sink;
    }
}

/// The stack's role processes get their command lines from the argument
/// types of this binary: each role's defaults, with what the stack sets
/// written over them.
#[derive(Debug)]
pub struct CliCommandLines;

impl RoleCommandLine for CliCommandLines {
    fn command_line(&self, launch: &RoleLaunch) -> Result<Vec<String>, String> {
        let refused = |err: clap::Error| err.to_string();
        Ok(match launch {
            RoleLaunch::Worker(worker) => {
                let mut args = WorkerArgs::defaults().map_err(refused)?;
                args.redis.redis_url = Some(worker.redis.url.clone());
                args.redis.redis_enabled = worker.redis.enabled;
                args.redis.partitions = worker.redis.partitions;
                metrics(&mut args.metrics, worker.metrics);
                args.admin_listen = worker.admin;
                args.consumer_name = Some(worker.consumer_name.clone());
                args.claim_timeout = worker.claim_timeout;
                args.processing_time = worker.processing_time;
                args.drain_timeout = worker.drain_timeout;
                args.command_line()
            }
            RoleLaunch::Ingress(ingress) => {
                let mut args = IngressArgs::defaults().map_err(refused)?;
                args.redis.redis_url = Some(ingress.redis.url.clone());
                args.redis.redis_enabled = ingress.redis.enabled;
                args.redis.partitions = ingress.redis.partitions;
                metrics(&mut args.metrics, ingress.metrics);
                args.listen = ingress.listen;
                args.admin_listen = ingress.admin;
                args.durability = ingress.durability;
                args.command_line()
            }
            RoleLaunch::Api(api) => {
                let mut args = ApiArgs::defaults().map_err(refused)?;
                args.redis.redis_url = Some(api.redis.url.clone());
                args.redis.redis_enabled = api.redis.enabled;
                args.redis.partitions = api.redis.partitions;
                metrics(&mut args.metrics, api.metrics);
                args.listen = api.listen;
                args.admin_listen = api.admin;
                args.database_url = DatabaseUrl::parse(&api.database_url)
                    .map_err(|err| format!("database URL: {err}"))?;
                args.cache_ttl = api.cache_ttl;
                if let Some(delay) = api.products_db_delay {
                    args.products_db_delay = delay;
                }
                args.command_line()
            }
            RoleLaunch::Exporter(exporter) => {
                let mut args = ExporterArgs::defaults().map_err(refused)?;
                args.redis.redis_url = Some(exporter.redis.url.clone());
                args.redis.redis_enabled = exporter.redis.enabled;
                args.redis.partitions = exporter.redis.partitions;
                args.listen = exporter.listen;
                args.command_line()
            }
            RoleLaunch::Dashboard(dashboard) => {
                let mut args = DashboardArgs::defaults().map_err(refused)?;
                args.redis.redis_url = Some(dashboard.redis.url.clone());
                args.redis.redis_enabled = dashboard.redis.enabled;
                args.redis.partitions = dashboard.redis.partitions;
                args.listen = dashboard.listen;
                args.control_url.clone_from(&dashboard.control_url);
                args.command_line()
            }
        })
    }
}
