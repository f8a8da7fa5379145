//! The holdfast binary: parses the command line and runs one role or tool.
//! Everything else lives in the library crates.

mod bench;
mod bench_cache;
mod bench_metrics;
mod chaos_cmd;
mod cli;
mod load_cmd;
mod roles;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    // Benchmarks print figures; their roles' routine logs would drown them.
    let default_filter = match cli.command {
        cli::Command::Bench(_) | cli::Command::Load(_) | cli::Command::LoadTarget(_) => "warn",
        _ => "info",
    };
    // Flushes exported spans (OTEL_EXPORTER_OTLP_ENDPOINT) once the runtime,
    // declared after it, is gone.
    let _otel = holdfast_telemetry::otel::ShutdownGuard;
    holdfast_telemetry::init_tracing(holdfast_telemetry::LogFormat::from_env(), default_filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: cli::Cli) -> Result<()> {
    let shutdown = CancellationToken::new();
    let forced_exit = ForcedExit::default();
    // Cancels the token on the first SIGINT or SIGTERM; a second signal
    // exits at once for people who really mean it. It lives as long as the
    // process, which exits when `run` returns.
    tokio::spawn(watch_signals(shutdown.clone(), forced_exit.clone()));
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
    }
}

/// The processes this one started that a forced exit (a second signal,
/// which skips every destructor) must kill first: the private redis-server
/// of `holdfast up`. Handed to whoever starts such a process and to the
/// signal watcher; clones share the list.
#[derive(Clone, Debug, Default)]
pub struct ForcedExit {
    pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

impl ForcedExit {
    /// Kill process `pid` if this process is forced to exit.
    pub fn kill_on_exit(&self, pid: u32) {
        self.pids
            .lock()
            .expect("forced-exit list poisoned")
            .push(pid);
    }

    /// Sends SIGKILL to every process on the list.
    fn kill_all(&self) {
        for &pid in self.pids.lock().expect("forced-exit list poisoned").iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
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
