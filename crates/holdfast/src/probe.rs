//! `holdfast probe URL`: a health check for containers that needs no curl.
//! It exits 0 when the URL answers 2xx within the timeout, and 1 with the
//! reason otherwise.

use anyhow::{Context, Result};

use crate::cli::ProbeArgs;

/// GETs the URL once.
pub async fn run(args: ProbeArgs) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .context("building the HTTP client")?;
    let response = match client.get(&args.url).send().await {
        Ok(response) => response,
        Err(err) => {
            let why = if err.is_timeout() {
                format!("no answer within {:?}", args.timeout)
            } else if err.is_connect() {
                "could not connect (nothing listens there, or the host is unreachable)".to_owned()
            } else {
                "the request failed".to_owned()
            };
            return Err(anyhow::Error::new(err).context(format!("{}: {why}", args.url)));
        }
    };
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{}: answered {status}", args.url);
    Ok(())
}
