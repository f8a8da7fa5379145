//! `holdfast load`: the command line of the load generator.

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

/// `holdfast load URL ...`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Target URL.
    pub url: String,
}

/// `holdfast load-target`.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: std::net::SocketAddr,
}

/// Runs a load.
pub async fn run(args: LoadArgs, _shutdown: CancellationToken) -> Result<()> {
    anyhow::bail!("load against {} is not built yet", args.url)
}

/// Serves the trivial endpoint until shutdown.
pub async fn target(args: TargetArgs, _shutdown: CancellationToken) -> Result<()> {
    anyhow::bail!("load-target on {} is not built yet", args.listen)
}
