//! The holdfast binary: parses the command line and runs one role or tool.
//! Everything else lives in the library crates.

mod bench;
mod bench_cache;
mod bench_metrics;
mod chaos_cmd;
mod cli;
mod config_file;
mod load_cmd;
mod probe;
mod roles;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

fn main() -> Result<()> {
    let (cli, invocation) = match config_file::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        // A mistake in the configuration file is a usage error, told as
        // clap tells one on the command line: the message, status 2.
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    };
    // Benchmarks print figures; their roles' routine logs would drown them.
    let default_filter = match cli.command {
        cli::Command::Bench(_)
        | cli::Command::Load(_)
        | cli::Command::LoadTarget(_)
        | cli::Command::Probe(_) => "warn",
        _ => "info",
    };
    // Flushes exported spans (OTEL_EXPORTER_OTLP_ENDPOINT) once the runtime,
    // declared after it, is gone.
    let _otel = holdfast_telemetry::otel::ShutdownGuard;
    holdfast_telemetry::init_tracing(holdfast_telemetry::LogFormat::from_env(), default_filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli, invocation))
}

async fn run(cli: cli::Cli, invocation: config_file::Invocation) -> Result<()> {
    let shutdown = CancellationToken::new();
    let forced_exit = ForcedExit::default();
    // Cancels the token on the first SIGINT or SIGTERM; a second signal
    // exits at once for people who really mean it. It lives as long as the
    // process, which exits when `run` returns.
    tokio::spawn(watch_signals(shutdown.clone(), forced_exit.clone()));
    if let Some(parent) = std::env::var(holdfast_chaos::stack::PARENT_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
    {
        tokio::spawn(watch_parent(parent, shutdown.clone()));
    }
    match cli.command {
        cli::Command::Up(args) => roles::up(args, shutdown, forced_exit).await,
        cli::Command::Api(args) => roles::api(args, shutdown).await,
        cli::Command::Ingress(args) => roles::ingress(args, shutdown).await,
        cli::Command::Worker(args) => roles::worker(args, shutdown).await,
        cli::Command::Exporter(args) => roles::exporter(args, shutdown).await,
        cli::Command::Dashboard(args) => roles::dashboard(args, shutdown).await,
        cli::Command::DeadLetters(cmd) => roles::dead_letters(cmd).await,
        cli::Command::Bench(cmd) => bench::run(cmd).await,
        cli::Command::Load(args) => load_cmd::run(args, shutdown).await,
        cli::Command::LoadTarget(args) => load_cmd::target(args, shutdown).await,
        cli::Command::Chaos(cmd) => chaos_cmd::run(cmd, shutdown).await,
        cli::Command::Config(cli::ConfigCommand::Show(args)) => {
            roles::show_config(args, &invocation)
        }
        cli::Command::Config(cli::ConfigCommand::Sample) => {
            print!("{}", config_file::sample());
            Ok(())
        }
        cli::Command::Probe(args) => probe::run(args).await,
    }
}

/// The processes this one started that a forced exit (a second signal,
/// which skips every destructor) must kill first: the private redis-server
/// and the roles of `holdfast up`. Handed to whoever starts such a process and to the
/// signal watcher; clones share the list.
#[derive(Clone, Debug, Default)]
pub struct ForcedExit {
    pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

impl ForcedExit {
    /// The processes to kill if this process is forced to exit, in place
    /// of the earlier list.
    pub fn set_pids(&self, pids: Vec<u32>) {
        *self.pids.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }

    /// Sends SIGKILL to every process on the list.
    fn kill_all(&self) {
        for &pid in self.pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A role started by a stack (`holdfast up`, `chaos run`) stops cleanly
/// when the process that started it is gone, even if that one was killed
/// with SIGKILL and could not stop it.
async fn watch_parent(parent: i32, shutdown: CancellationToken) {
    loop {
        if nix::unistd::getppid().as_raw() != parent {
            tracing::warn!(
                parent,
                "the process that started this one is gone: shutting down"
            );
            shutdown.cancel();
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}

async fn watch_signals(shutdown: CancellationToken, forced_exit: ForcedExit) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("could not install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting now");
    forced_exit.kill_all();
    std::process::exit(130);
}
