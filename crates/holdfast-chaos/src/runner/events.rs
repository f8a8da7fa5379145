//! The run's clock and its log of events: state changes of every role's
//! Redis connection (read from `/health`), processes killed and restarted,
//! faults started and ended. Every time in the report is seconds on this
//! clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::faults::FaultLog;
use crate::report::Event;

/// How often each role's `/health` is read.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// How often a line of figures is printed while the load runs, and a line
/// of reconnect attempts while a role's Redis is not ready.
pub(super) const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Seconds since the run started, for every timestamp of the report.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) start: Instant,
    pub(super) start_unix_ms: u64,
}

impl Clock {
    pub(super) fn now() -> Self {
        Self {
            start: Instant::now(),
            start_unix_ms: unix_ms(),
        }
    }

    pub(super) fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The events of the run, printed as they come when `live`. Clones share
/// one list: every watcher and fault task holds one.
#[derive(Clone)]
pub(super) struct Events {
    clock: Clock,
    live: bool,
    list: Arc<Mutex<Vec<Event>>>,
}

impl Events {
    pub(super) fn new(clock: Clock, live: bool) -> Self {
        Self {
            clock,
            live,
            list: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(super) fn push(&self, source: &str, what: impl Into<String>) {
        let at_s = self.clock.seconds();
        let what = what.into();
        if self.live {
            eprintln!("[{at_s:>6.1}s] {source:<10} {what}");
        }
        if let Ok(mut list) = self.list.lock() {
            list.push(Event {
                at_s,
                source: source.to_owned(),
                what,
            });
        }
    }

    pub(super) fn take(&self) -> Vec<Event> {
        self.list
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// Faults speak as the runner; what they do to a process is that
/// process's event.
impl FaultLog for Events {
    fn fault(&self, what: String) {
        self.push("runner", what);
    }

    fn process(&self, process: &str, what: String) {
        self.push(process, what);
    }
}

/// Watches one role's `/health` until `stop`: its Redis state, reconnect
/// attempts and whether it answers at all; changes become events.
pub(super) async fn watch_health(
    role: String,
    url: String,
    events: Events,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let mut last: Option<String> = None;
    let mut last_attempts_print = Instant::now();
    loop {
        let state = match client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(resp) => match resp.json::<Value>().await {
                Ok(body) => {
                    let redis = &body["redis"];
                    let state = redis["state"].as_str().unwrap_or("unknown").to_owned();
                    let attempts = redis["reconnect_attempts"].as_u64().unwrap_or(0);
                    let error = redis["last_error"].as_str().unwrap_or("").to_owned();
                    if state == "ready" {
                        last_attempts_print = Instant::now();
                    } else if last_attempts_print.elapsed() >= STATUS_EVERY {
                        last_attempts_print = Instant::now();
                        if events.live {
                            eprintln!(
                                "[{:>6.1}s] {role:<10} redis {state}, {attempts} reconnect attempts so far{}",
                                events.clock.seconds(),
                                if error.is_empty() {
                                    String::new()
                                } else {
                                    format!(", last error {error}")
                                }
                            );
                        }
                    }
                    if error.is_empty() || state == "ready" {
                        format!("redis {state}")
                    } else {
                        format!("redis {state} ({error})")
                    }
                }
                Err(_) => "health unreadable".to_owned(),
            },
            Err(_) => "process not answering".to_owned(),
        };
        if last.as_deref() != Some(state.as_str()) {
            let what = match &last {
                Some(before) => format!("{before} -> {state}"),
                None => state.clone(),
            };
            events.push(&role, what);
            last = Some(state);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
