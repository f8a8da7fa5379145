//! `holdfast load`: the command line of the load generator
//! (`holdfast-load`), and `holdfast load-target`, a trivial endpoint to
//! measure the generator itself against.
//!
//! The flags and the `--json` output are a stable interface: scripts rely
//! on them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use holdfast_core::{PROBLEM_JSON, Problem};
use holdfast_load::{HealthCheck, LoadReport, LoadSpec, Mode, Stop};
use tokio_util::sync::CancellationToken;

use crate::cli::parse_duration;

/// `holdfast load URL ...`: sends HTTP/1.1 requests at URL and prints what
/// came back.
///
/// Mode: `--concurrency N` (closed model, default 16), `--rate R` (open
/// model: R requests per second whatever the answers do, at most
/// `--max-in-flight` outstanding, latency corrected for coordinated
/// omission) or `--sequential`. Stop: `--requests N` or `--duration D`
/// (default 10s when neither is given), or Ctrl-C.
///
/// Health check, before the load starts: by default the target URL itself
/// is polled with GET every 200 ms until it answers anything below 500 (the
/// target is up, even if it wants a POST); with `--health-url U`, U must
/// answer 2xx. Either way for at most `--health-timeout`, after which the
/// command fails. `--no-health-check` skips it.
///
/// Exit status: 0 when the run completed, even with errors (they are data);
/// non-zero for a bad URL or flag, or a failed health check.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Target URL (http:// only).
    pub url: String,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// Request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Closed model: this many requests in flight (the default, 16).
    #[arg(long, conflicts_with_all = ["rate", "sequential"])]
    pub concurrency: Option<usize>,
    /// Open model: requests per second (`200` or `200/s`).
    #[arg(long, value_parser = parse_rate, conflicts_with = "sequential")]
    pub rate: Option<f64>,
    /// One request at a time.
    #[arg(long)]
    pub sequential: bool,
    /// Stop after this many requests.
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Stop after this long (default 10s when --requests is not given).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Per request, connecting included; past it the request is a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Rate mode: most requests (and connections) outstanding at once.
    #[arg(long, default_value_t = 256, requires = "rate")]
    pub max_in_flight: usize,
    /// Health URL that must answer 2xx before the load starts.
    #[arg(long, conflicts_with = "no_health_check")]
    pub health_url: Option<String>,
    /// Start at once, without checking that the target is up.
    #[arg(long)]
    pub no_health_check: bool,
    /// How long the health check may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Print one JSON object on one line (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `holdfast load-target`: answers `GET`/`POST /` with 200 "ok",
/// `/status/{code}` with that status (a problem+json body for codes >= 400)
/// and `/delay/{ms}` with 200 after sleeping that long.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: std::net::SocketAddr,
}

/// Parses `200`, `200/s` or `1.5/s`.
fn parse_rate(raw: &str) -> Result<f64, String> {
    let number = raw.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("not a rate: {raw:?} (try 200 or 200/s)")),
    }
}

/// Splits `Name: value`.
fn parse_header(raw: &str) -> Result<(String, String)> {
    let (name, value) = raw
        .split_once(':')
        .with_context(|| format!("header {raw:?} is not `Name: value`"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

impl LoadArgs {
    fn spec(&self, shutdown: CancellationToken) -> Result<LoadSpec> {
        let method = http_method(&self.method)?;
        let headers = self
            .headers
            .iter()
            .map(|raw| parse_header(raw))
            .collect::<Result<Vec<_>>>()?;
        let body = match (&self.body, &self.body_file) {
            (Some(body), _) => bytes::Bytes::from(body.clone()),
            (None, Some(path)) => bytes::Bytes::from(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ),
            (None, None) => bytes::Bytes::new(),
        };
        let mode = match (self.sequential, self.rate, self.concurrency) {
            (true, _, _) => Mode::Sequential,
            (false, Some(per_sec), _) => Mode::Rate {
                per_sec,
                max_in_flight: self.max_in_flight,
            },
            (false, None, concurrency) => Mode::Concurrency(concurrency.unwrap_or(16)),
        };
        let duration = match (self.requests, self.duration) {
            (None, None) => Some(Duration::from_secs(10)),
            (_, duration) => duration,
        };
        Ok(LoadSpec {
            url: self.url.clone(),
            method,
            headers,
            body,
            mode,
            stop: Stop {
                requests: self.requests,
                duration,
                cancel: Some(shutdown),
            },
            timeout: self.timeout,
            health_check: self.health_url.as_ref().map(|url| HealthCheck {
                url: url.clone(),
                timeout: self.health_timeout,
            }),
            progress: !(self.json || self.no_progress),
        })
    }
}

fn http_method(raw: &str) -> Result<axum::http::Method> {
    axum::http::Method::from_bytes(raw.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("not an HTTP method: {raw:?}"))
}

/// Runs a load and prints its report.
pub async fn run(args: LoadArgs, shutdown: CancellationToken) -> Result<()> {
    let spec = args.spec(shutdown)?;
    if args.health_url.is_none() && !args.no_health_check {
        holdfast_load::wait_healthy(&args.url, args.health_timeout, |status| {
            status.as_u16() < 500
        })
        .await
        .map_err(|err| match err {
            holdfast_load::LoadError::Unhealthy { .. } => anyhow::Error::from(err)
                .context("the target is not up (--no-health-check skips this check)"),
            other => other.into(),
        })?;
    }
    let rate_mode = matches!(spec.mode, Mode::Rate { .. });
    let report = holdfast_load::run(spec)
        .await
        .with_context(|| format!("load against {}", args.url))?;
    if args.json {
        println!("{}", serde_json::to_string(&report.summary_json())?);
    } else {
        print!("{}", human_summary(&report, rate_mode));
    }
    Ok(())
}

fn human_summary(report: &LoadReport, rate_mode: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "requests {}  ok {}  errors {}  in {:.2}s  ({:.0} req/s)",
        report.requests, report.ok, report.errors, report.duration_s, report.rps
    );
    let _ = writeln!(out, "status   {}", counts_text(&report.status_counts, "-"));
    let _ = writeln!(out, "failures {}", counts_text(&report.failures, "none"));
    let _ = writeln!(
        out,
        "unexplained errors (not problem+json, or no answer) {}",
        report.unexplained
    );
    let _ = writeln!(
        out,
        "latency  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        report.p50_ms, report.p90_ms, report.p99_ms, report.p999_ms, report.max_ms
    );
    let _ = writeln!(
        out,
        "{}",
        if rate_mode {
            "latency measured from each request's scheduled time (corrected for coordinated omission)"
        } else {
            "latency measured from each send (closed model: not corrected for coordinated omission)"
        }
    );
    out
}

/// `name: count` pairs joined by commas, or `empty` when there are none.
fn counts_text(counts: &BTreeMap<String, u64>, empty: &str) -> String {
    if counts.is_empty() {
        return empty.to_owned();
    }
    counts
        .iter()
        .map(|(name, count)| format!("{name}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serves the trivial endpoint until shutdown.
pub async fn target(args: TargetArgs, shutdown: CancellationToken) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("load target listening on http://{}", listener.local_addr()?);
    axum::serve(listener, target_router())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the load target")
}

fn target_router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }).post(|| async { "ok" }))
        .route("/status/{code}", get(status).post(status))
        .route("/delay/{ms}", get(delay).post(delay))
}

async fn status(Path(code): Path<u16>) -> axum::response::Response {
    let Ok(status) = StatusCode::from_u16(code) else {
        return (StatusCode::BAD_REQUEST, "not a status code").into_response();
    };
    if code >= 400 {
        let problem = Problem::new(
            code,
            "requested_status",
            format!("status {code}"),
            "the path asked for this status",
        );
        // The header replaces the one `Json` sets.
        (
            status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            Json(problem),
        )
            .into_response()
    } else {
        (status, "ok").into_response()
    }
}

async fn delay(Path(ms): Path<u64>) -> &'static str {
    // Bounded so that a typo cannot park connections for hours.
    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(args: &[&str]) -> LoadArgs {
        Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .expect("valid arguments")
            .args
    }

    #[test]
    fn defaults_are_concurrency_16_for_10_seconds() {
        let spec = parse(&["http://127.0.0.1:1/"])
            .spec(CancellationToken::new())
            .unwrap();
        assert_eq!(spec.mode, Mode::Concurrency(16));
        assert_eq!(spec.stop.duration, Some(Duration::from_secs(10)));
        assert_eq!(spec.stop.requests, None);
        assert_eq!(spec.timeout, Duration::from_secs(10));
    }

    #[test]
    fn rate_mode_takes_per_second_and_max_in_flight() {
        let spec = parse(&[
            "http://h/",
            "--rate",
            "200/s",
            "--max-in-flight",
            "8",
            "--requests",
            "5",
        ])
        .spec(CancellationToken::new())
        .unwrap();
        assert_eq!(
            spec.mode,
            Mode::Rate {
                per_sec: 200.0,
                max_in_flight: 8
            }
        );
        assert_eq!(spec.stop.requests, Some(5));
        assert_eq!(spec.stop.duration, None);
    }

    #[test]
    fn headers_and_method_are_parsed() {
        let spec = parse(&[
            "http://h/",
            "-X",
            "post",
            "-H",
            "Idempotency-Key: abc",
            "--body",
            "{}",
        ])
        .spec(CancellationToken::new())
        .unwrap();
        assert_eq!(spec.method, axum::http::Method::POST);
        assert_eq!(
            spec.headers,
            vec![("Idempotency-Key".to_owned(), "abc".to_owned())]
        );
        assert_eq!(&spec.body[..], b"{}");
    }

    #[test]
    fn conflicting_modes_are_refused() {
        let parsed =
            Cli::try_parse_from(["load", "http://h/", "--rate", "5", "--concurrency", "3"]);
        assert!(parsed.is_err());
    }
}
