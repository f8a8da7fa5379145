//! Keeping a stack running, as `holdfast up` does: a role process that dies
//! when nobody meant it to (a crash, a SIGKILL from outside or from the
//! dashboard's "kill a worker") is started again with backoff, and a
//! private redis-server that died outside a fault is started again at
//! once. Every such step is an event in the stack's [`EventLog`], which the
//! control API shows and the dashboard lists.
//!
//! A role stopped through the stack on purpose ([`Role::kill9`], the
//! scenario runner's worker kills) is not the supervisor's business: the
//! stack knows it is down, and whoever stopped it starts it again.
//!
//! [`Role::kill9`]: crate::stack::Role::kill9

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::faults::{FaultLog, SharedStack};

/// How often the processes are looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Wait before the first restart of a process that died.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Longest wait between restarts of a process that keeps dying.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A process that ran this long before dying starts again after
/// [`FIRST_BACKOFF`]: its earlier deaths are forgotten.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Events kept; older ones are dropped.
pub const EVENTS_KEPT: usize = 500;

/// One thing that happened to the stack: a process died or was started
/// again, a fault started or ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackEvent {
    /// Increases by one per event, so a reader can ask for what is new.
    pub id: u64,
    /// When, in Unix milliseconds.
    pub at_unix_ms: u64,
    /// The process it is about (`worker-1`, `redis`), if one.
    pub process: Option<String>,
    /// What happened.
    pub what: String,
}

/// The stack's recent events, shared by the supervisor, the faults and the
/// control API; clones share the log.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    inner: Arc<Mutex<EventRing>>,
}

#[derive(Debug, Default)]
struct EventRing {
    next_id: u64,
    events: VecDeque<StackEvent>,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Adds an event (and logs it).
    pub fn push(&self, process: Option<&str>, what: impl Into<String>) {
        let what = what.into();
        match process {
            Some(process) => tracing::info!(process, "{what}"),
            None => tracing::info!("{what}"),
        }
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.next_id += 1;
        let event = StackEvent {
            id: ring.next_id,
            at_unix_ms: unix_ms(),
            process: process.map(str::to_owned),
            what,
        };
        if ring.events.len() == EVENTS_KEPT {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
    }

    /// The last `n` events, oldest first.
    pub fn recent(&self, n: usize) -> Vec<StackEvent> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = ring.events.len().saturating_sub(n);
        ring.events.iter().skip(skip).cloned().collect()
    }
}

impl FaultLog for EventLog {
    fn fault(&self, what: String) {
        self.push(None, what);
    }

    fn process(&self, process: &str, what: String) {
        self.push(Some(process), what);
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wait before the next start of a process that died after running
/// `ran` with `failures` earlier deaths in a row; the new count of deaths.
pub fn backoff(failures: u32, ran: Duration) -> (Duration, u32) {
    let failures = if ran >= STABLE_AFTER { 0 } else { failures };
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << failures.min(16))
        .min(MAX_BACKOFF);
    (delay, failures + 1)
}

/// Where a process stands between restarts.
struct Restart {
    failures: u32,
    started: Instant,
    due: Option<Instant>,
}

/// Watches the stack until `stop`: restarts what died, tells `events`. A
/// start that fails is tried again after the next backoff.
pub async fn supervise(stack: SharedStack, events: EventLog, stop: CancellationToken) {
    let mut restarts: HashMap<String, Restart> = HashMap::new();
    // Set when the supervisor's own start of Redis failed: tried again
    // then, with backoff (a Redis down because of a fault is left alone).
    let mut redis_retry: Option<(Instant, u32)> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let mut guard = stack.lock().await;
        if stop.is_cancelled() {
            return;
        }
        let now = Instant::now();
        for role in guard.roles_mut() {
            let entry = restarts.entry(role.name.clone()).or_insert(Restart {
                failures: 0,
                started: now,
                due: None,
            });
            if let Some(status) = role.exited() {
                let (delay, failures) = backoff(entry.failures, now - entry.started);
                entry.failures = failures;
                entry.due = Some(now + delay);
                events.push(
                    Some(&role.name),
                    format!(
                        "exited unexpectedly ({status}); starting it again in {}",
                        holdfast_core::duration::format_duration(delay)
                    ),
                );
            }
        }
        let due: Vec<String> = restarts
            .iter()
            .filter(|(_, r)| r.due.is_some_and(|due| due <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let result = guard.respawn(&name);
            let Some(entry) = restarts.get_mut(&name) else {
                continue;
            };
            match result {
                Ok(n) => {
                    entry.due = None;
                    entry.started = now;
                    events.push(Some(&name), format!("started again (restart {n})"));
                }
                Err(err) => {
                    let (delay, failures) = backoff(entry.failures, Duration::ZERO);
                    entry.failures = failures;
                    entry.due = Some(now + delay);
                    events.push(
                        Some(&name),
                        format!(
                            "could not start again ({err}); trying again in {}",
                            holdfast_core::duration::format_duration(delay)
                        ),
                    );
                }
            }
        }
        let Some(server) = guard.redis.as_mut() else {
            continue;
        };
        let failures = if let Some(status) = server.exited() {
            events.push(
                Some("redis"),
                format!("redis-server exited unexpectedly ({status}); starting it again"),
            );
            0
        } else if let Some((at, failures)) = redis_retry
            && at <= now
        {
            failures
        } else {
            continue;
        };
        match server.restart().await {
            Ok(()) => {
                redis_retry = None;
                events.push(Some("redis"), "redis-server started again");
            }
            Err(err) => {
                let (delay, failures) = backoff(failures, Duration::ZERO);
                redis_retry = Some((Instant::now() + delay, failures));
                events.push(
                    Some("redis"),
                    format!(
                        "redis-server did not start again ({err}); trying again in {}",
                        holdfast_core::duration::format_duration(delay)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_forget_after_a_stable_run() {
        let quick = Duration::from_secs(1);
        let (d1, f1) = backoff(0, quick);
        let (d2, f2) = backoff(f1, quick);
        let (d3, f3) = backoff(f2, quick);
        assert_eq!(
            (d1, d2, d3),
            (FIRST_BACKOFF, FIRST_BACKOFF * 2, FIRST_BACKOFF * 4)
        );
        assert_eq!(f3, 3);
        assert_eq!(backoff(40, quick).0, MAX_BACKOFF);
        assert_eq!(backoff(f3, STABLE_AFTER), (FIRST_BACKOFF, 1));
    }

    #[test]
    fn the_event_log_keeps_the_newest_in_order() {
        let log = EventLog::new();
        for i in 0..(EVENTS_KEPT + 5) {
            log.push(Some("worker-1"), format!("event {i}"));
        }
        let recent = log.recent(3);
        let whats: Vec<_> = recent.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                format!("event {}", EVENTS_KEPT + 2),
                format!("event {}", EVENTS_KEPT + 3),
                format!("event {}", EVENTS_KEPT + 4)
            ]
        );
        assert!(recent.windows(2).all(|w| w[0].id + 1 == w[1].id));
        assert_eq!(log.recent(10_000).len(), EVENTS_KEPT);
    }
}
