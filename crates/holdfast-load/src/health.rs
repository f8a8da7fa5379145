//! Waiting until the target is up before loading it.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use crate::LoadError;
use crate::conn::{Connection, exchange};
use crate::target::{RequestTemplate, Target};

/// Pause between attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Polls `url` with `GET` every 200 ms until an answer's status satisfies
/// `healthy`, or fails with [`LoadError::Unhealthy`] after `timeout`. Each
/// attempt uses a fresh connection and is cut off at the overall deadline.
pub async fn wait_healthy(
    url: &str,
    timeout: Duration,
    healthy: impl Fn(StatusCode) -> bool,
) -> Result<(), LoadError> {
    let target = Target::parse(url)?;
    let request = RequestTemplate::get(&target);
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let addr = target.resolve().await.map_err(|err| err.to_string())?;
            let mut connection: Connection = None;
            exchange(&mut connection, addr, request.build())
                .await
                .map(|answer| answer.status)
                .map_err(|kind| format!("{kind} failure"))
        };
        let last = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(status)) if healthy(status) => return Ok(()),
            Ok(Ok(status)) => format!("status {status}"),
            Ok(Err(reason)) => reason,
            Err(_) => "no answer before the deadline".to_owned(),
        };
        if Instant::now() + POLL_INTERVAL >= deadline {
            return Err(LoadError::Unhealthy {
                url: url.to_owned(),
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
