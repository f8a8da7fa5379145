//! The run: validated plan, slots, and the merge of their results.
//!
//! One slot per in-flight request (a tokio task). A slot loops: take the
//! next ticket (a shared atomic counter, which is also the request's `seq`),
//! in rate mode sleep until the ticket is due, send on its own connection,
//! record. Slots share nothing mutable on the hot path except the ticket
//! counter and their own padded progress counters; each keeps its own HDR
//! histogram and counts, returned when it ends and merged here.
//!
//! Every slot loop ends by itself: on the request limit (tickets run out),
//! at the deadline, or when the stop token is cancelled. Requests in flight
//! at that point finish or hit their timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use holdfast_core::Problem;
use http::header::CONTENT_TYPE;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::conn::{Answer, Connection, exchange};
use crate::progress::{self, SlotCounters};
use crate::report::LoadReport;
use crate::target::{RequestTemplate, Target};
use crate::timeline::{MAX_LATENCY_US, SecondAccumulator, Timeline, latency_histogram};
use crate::{FailureKind, Hook, LoadError, LoadSpec, Mode, Outcome};

/// After a refused connection a closed-model slot pauses this long, so a
/// target that is down is probed steadily instead of in a busy loop. (In
/// rate mode the schedule already paces the attempts.)
const CONNECT_BACKOFF: Duration = Duration::from_millis(5);

/// Status codes are three digits; one counter per possible code.
const STATUS_SLOTS: usize = 1000;

/// A spec checked and turned into what the slots need.
pub(crate) struct Plan {
    addr: SocketAddr,
    template: RequestTemplate,
    slots: usize,
    /// Seconds between due times in rate mode.
    interval_s: Option<f64>,
    limit: u64,
    duration: Option<Duration>,
    cancel: Option<CancellationToken>,
    timeout: Duration,
    progress: bool,
}

impl Plan {
    pub async fn new(spec: &LoadSpec) -> Result<Self, LoadError> {
        let invalid = |reason: &str| Err(LoadError::InvalidSpec(reason.to_owned()));
        let (slots, interval_s) = match spec.mode {
            Mode::Sequential => (1, None),
            Mode::Concurrency(0) => return invalid("concurrency must be at least 1"),
            Mode::Concurrency(n) => (n, None),
            Mode::Rate {
                max_in_flight: 0, ..
            } => return invalid("max_in_flight must be at least 1"),
            Mode::Rate { per_sec, .. } if !(per_sec.is_finite() && per_sec > 0.0) => {
                return invalid("the rate must be a positive number of requests per second");
            }
            Mode::Rate {
                per_sec,
                max_in_flight,
            } => (max_in_flight, Some(1.0 / per_sec)),
        };
        let stop = &spec.stop;
        if stop.requests.is_none() && stop.duration.is_none() && stop.cancel.is_none() {
            return invalid(
                "no stop condition: set a number of requests, a duration or a cancel token",
            );
        }
        if spec.timeout.is_zero() {
            return invalid("the request timeout must be positive");
        }
        let target = Target::parse(&spec.url)?;
        let template = RequestTemplate::new(
            &target,
            spec.method.clone(),
            &spec.headers,
            spec.body.clone(),
        )?;
        Ok(Plan {
            addr: target.resolve().await?,
            template,
            slots,
            interval_s,
            limit: stop.requests.unwrap_or(u64::MAX),
            duration: stop.duration,
            cancel: stop.cancel.clone(),
            timeout: spec.timeout,
            progress: spec.progress,
        })
    }
}

/// What the slots share. Owned by the run (an `Arc` per slot).
struct Shared {
    addr: SocketAddr,
    template: RequestTemplate,
    hook: Arc<dyn Hook>,
    timeout: Duration,
    /// Next `seq`; in rate mode also the next due time.
    tickets: AtomicU64,
    limit: u64,
    interval_s: Option<f64>,
    start: Instant,
    deadline: Option<Instant>,
    /// Set at the deadline or on cancel: read on the hot path (a plain load,
    /// where the token would take a lock).
    stopped: AtomicBool,
    /// Cancelled together with `stopped`, to wake slots that sleep.
    stop_signal: CancellationToken,
    timeline: Arc<Timeline>,
    counters: Arc<[SlotCounters]>,
}

impl Shared {
    fn second_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }
}

/// One slot's results.
struct SlotStats {
    latency: Histogram<u64>,
    statuses: Vec<u64>,
    failures: [u64; 3],
    unexplained: u64,
    requests: u64,
    ok: u64,
}

impl SlotStats {
    fn new() -> Self {
        SlotStats {
            latency: latency_histogram(3),
            statuses: vec![0; STATUS_SLOTS],
            failures: [0; 3],
            unexplained: 0,
            requests: 0,
            ok: 0,
        }
    }

    /// Returns whether the answer counts as ok.
    fn record_answer(&mut self, answer: &Answer, latency_us: u64) -> bool {
        self.requests += 1;
        self.latency.saturating_record(latency_us);
        let status = answer.status.as_u16();
        self.statuses[usize::from(status) % STATUS_SLOTS] += 1;
        if status < 400 {
            self.ok += 1;
            return true;
        }
        let explained = answer
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|value| Problem::is_media_type(value.as_bytes()));
        self.unexplained += u64::from(!explained);
        false
    }

    fn record_failure(&mut self, kind: FailureKind, latency_us: u64) {
        self.requests += 1;
        self.latency.saturating_record(latency_us);
        self.failures[kind.index()] += 1;
        self.unexplained += 1;
    }
}

async fn run_slot(shared: Arc<Shared>, slot: usize) -> SlotStats {
    let mut stats = SlotStats::new();
    let mut this_second = SecondAccumulator::new(slot);
    let mut connection: Connection = None;
    let timeline = &*shared.timeline;
    loop {
        if shared.stopped.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if shared.deadline.is_some_and(|deadline| now >= deadline) {
            break;
        }
        let seq = shared.tickets.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.limit {
            break;
        }
        // `due` is where latency is measured from: the send in the closed
        // model, the scheduled time in the open one.
        let (due, send_at) = match shared.interval_s {
            None => (now, now),
            Some(interval_s) => {
                let due = shared.start + Duration::from_secs_f64(seq as f64 * interval_s);
                if shared.deadline.is_some_and(|deadline| due >= deadline) {
                    break;
                }
                if due > now {
                    this_second.advance(timeline, shared.second_of(due));
                    tokio::select! {
                        () = sleep_until(due) => {}
                        () = shared.stop_signal.cancelled() => break,
                    }
                    (due, due)
                } else {
                    (due, now)
                }
            }
        };
        this_second.advance(timeline, shared.second_of(send_at));
        let mut request = shared.template.build();
        shared.hook.prepare(seq, request.headers_mut());
        let result = timeout_at(
            send_at + shared.timeout,
            exchange(&mut connection, shared.addr, request),
        )
        .await;
        let done = Instant::now();
        let latency = done.saturating_duration_since(due);
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(MAX_LATENCY_US);
        let (ok, failure) = match result {
            Ok(Ok(answer)) => {
                let ok = stats.record_answer(&answer, latency_us);
                shared.hook.observe(
                    seq,
                    &Outcome::Answer {
                        status: answer.status,
                        headers: &answer.headers,
                        body: &answer.body,
                        latency,
                    },
                );
                (ok, None)
            }
            Ok(Err(kind)) => (false, Some(kind)),
            Err(_elapsed) => (false, Some(FailureKind::Timeout)),
        };
        if let Some(kind) = failure {
            // Whatever state the connection is in, it cannot be trusted for
            // the next request.
            connection = None;
            stats.record_failure(kind, latency_us);
            shared.hook.observe(seq, &Outcome::Failed { kind, latency });
        }
        this_second.record(timeline, shared.second_of(done), latency_us, ok);
        let counters = &shared.counters[slot];
        counters.done.store(stats.requests, Ordering::Relaxed);
        counters
            .errors
            .store(stats.requests - stats.ok, Ordering::Relaxed);
        if failure == Some(FailureKind::Connect) && shared.interval_s.is_none() {
            tokio::select! {
                () = sleep(CONNECT_BACKOFF) => {}
                () = shared.stop_signal.cancelled() => break,
            }
        }
    }
    this_second.finish(timeline);
    stats
}

pub(crate) async fn execute(plan: Plan, hook: Arc<dyn Hook>) -> LoadReport {
    let start = Instant::now();
    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let timeline = Arc::new(Timeline::new(plan.slots));
    let counters: Arc<[SlotCounters]> = (0..plan.slots).map(|_| SlotCounters::default()).collect();
    let shared = Arc::new(Shared {
        addr: plan.addr,
        template: plan.template,
        hook,
        timeout: plan.timeout,
        tickets: AtomicU64::new(0),
        limit: plan.limit,
        interval_s: plan.interval_s,
        start,
        deadline: plan.duration.map(|duration| start + duration),
        stopped: AtomicBool::new(false),
        stop_signal: CancellationToken::new(),
        timeline: timeline.clone(),
        counters: counters.clone(),
    });
    // Cancelled once every slot has ended; ends the watcher and the bar.
    let finished = CancellationToken::new();

    // Turns the deadline and the caller's token into the stop flag. Ends at
    // the first of them, or when the run is over.
    let watcher = tokio::spawn({
        let shared = shared.clone();
        let finished = finished.clone();
        let cancel = plan.cancel;
        async move {
            let deadline = async {
                match shared.deadline {
                    Some(deadline) => sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let cancelled = async {
                match &cancel {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = deadline => {}
                () = cancelled => {}
                () = finished.cancelled() => {}
            }
            shared.stopped.store(true, Ordering::Relaxed);
            shared.stop_signal.cancel();
        }
    });
    let bar = if plan.progress {
        progress::spawn(
            (plan.limit != u64::MAX).then_some(plan.limit),
            plan.duration,
            counters,
            timeline.clone(),
            finished.clone(),
        )
    } else {
        None
    };

    let slots: Vec<_> = (0..plan.slots)
        .map(|slot| tokio::spawn(run_slot(shared.clone(), slot)))
        .collect();
    let mut latency = latency_histogram(3);
    let mut statuses = vec![0u64; STATUS_SLOTS];
    let mut failures = [0u64; 3];
    let (mut requests, mut ok, mut unexplained) = (0, 0, 0);
    for slot in slots {
        let stats = match slot.await {
            Ok(stats) => stats,
            // A hook that panics takes the run down with it.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => continue,
        };
        let _ = latency.add(&stats.latency);
        for (total, count) in statuses.iter_mut().zip(&stats.statuses) {
            *total += count;
        }
        for (total, count) in failures.iter_mut().zip(stats.failures) {
            *total += count;
        }
        requests += stats.requests;
        ok += stats.ok;
        unexplained += stats.unexplained;
    }
    let end = Instant::now();
    finished.cancel();
    let _ = watcher.await;
    if let Some(bar) = bar {
        let _ = bar.await;
    }

    let duration_s = end.duration_since(start).as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let quantile = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            ms(latency.value_at_quantile(q))
        }
    };
    LoadReport {
        requests,
        ok,
        errors: requests - ok,
        status_counts: statuses
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(status, &count)| (status.to_string(), count))
            .collect(),
        failures: FailureKind::ALL
            .iter()
            .filter(|kind| failures[kind.index()] > 0)
            .map(|kind| (kind.as_str().to_owned(), failures[kind.index()]))
            .collect(),
        unexplained,
        rps: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        p50_ms: quantile(0.5),
        p90_ms: quantile(0.9),
        p99_ms: quantile(0.99),
        p999_ms: quantile(0.999),
        max_ms: if latency.is_empty() {
            0.0
        } else {
            ms(latency.max())
        },
        duration_s,
        started_at_unix_ms,
        timeline: timeline.finish(shared.second_of(end)),
    }
}
