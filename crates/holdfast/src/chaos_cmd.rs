//! `holdfast chaos`: the fault proxy and the scenario runner.

use anyhow::Result;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

/// `holdfast chaos ...`.
#[derive(Subcommand, Debug)]
pub enum ChaosCommand {
    /// List the built-in scenarios.
    List,
}

/// Runs a chaos command.
pub async fn run(cmd: ChaosCommand, _shutdown: CancellationToken) -> Result<()> {
    match cmd {
        ChaosCommand::List => Ok(()),
    }
}
