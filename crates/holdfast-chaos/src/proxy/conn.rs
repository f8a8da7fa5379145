//! One proxied connection: dial the upstream, then run two pumps (client
//! to server, server to client) as two futures of the connection's task,
//! each applying the faults of its direction.
//!
//! A pump ends on end of stream (it then half-closes its writer and the
//! other pump goes on), on an error, on a `close_after` budget spent, or
//! when the connection is cancelled (reset, down, shutdown, or the other
//! pump failing). The task owns both sockets, so after the pumps it can
//! still choose how the client side is closed: a FIN, or an RST when the
//! connection was reset.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ConnControl, Direction, Fault, FaultId, FaultSet, Shared};

/// Size of a pump's read buffer.
const READ_BUFFER: usize = 32 * 1024;

/// Most bytes a pump holds read but not yet written (waiting out latency
/// or pacing) before it stops reading, so a slow direction pushes back on
/// the sender through TCP instead of growing without bound.
const MAX_QUEUED: usize = 4 * 1024 * 1024;

/// Under a bandwidth limit, one write carries at most this share of a
/// second's worth of bytes, so the rate is smooth at that scale.
const BANDWIDTH_WRITES_PER_SEC: u64 = 50;

/// Bytes forwarded on one connection, per direction, for `close_after`.
#[derive(Default)]
struct Forwarded {
    upstream: AtomicU64,
    downstream: AtomicU64,
}

impl Forwarded {
    fn counter(&self, flow: Direction) -> &AtomicU64 {
        match flow {
            Direction::Downstream => &self.downstream,
            _ => &self.upstream,
        }
    }

    /// Bytes forwarded so far in the ways `direction` covers.
    fn total(&self, direction: Direction) -> u64 {
        match direction {
            Direction::Both => {
                self.upstream.load(Ordering::Relaxed) + self.downstream.load(Ordering::Relaxed)
            }
            flow => self.counter(flow).load(Ordering::Relaxed),
        }
    }
}

/// Runs one accepted connection to its end.
pub(super) async fn run(shared: &Arc<Shared>, mut client: TcpStream, control: &ConnControl) {
    // Nagle would hold small replies back for the client's delayed ACK,
    // adding up to tens of milliseconds the proxy is not asked to add.
    let _ = client.set_nodelay(true);
    let dialled = tokio::select! {
        () = control.cancel.cancelled() => None,
        dialled = TcpStream::connect(shared.upstream.as_str()) => Some(dialled),
    };
    let mut upstream = match dialled {
        Some(Ok(upstream)) => upstream,
        Some(Err(error)) => {
            tracing::debug!(proxy = %shared.name, upstream = %shared.upstream, %error, "upstream unreachable");
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        None => {
            finish(shared, &client, control);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);

    let forwarded = Forwarded::default();
    {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let to_server = Pump::new(shared, Direction::Upstream, &forwarded, &control.cancel);
        let to_client = Pump::new(shared, Direction::Downstream, &forwarded, &control.cancel);
        // Either pump ending other than by end of stream ends the
        // connection: the other one is cancelled through the token.
        let pump_to_server = async {
            let end = to_server.run(client_read, upstream_write).await;
            if end != PumpEnd::Eof {
                control.cancel.cancel();
            }
        };
        let pump_to_client = async {
            let end = to_client.run(upstream_read, client_write).await;
            if end != PumpEnd::Eof {
                control.cancel.cancel();
            }
        };
        tokio::join!(pump_to_server, pump_to_client);
    }
    finish(shared, &client, control);
}

/// Arms an RST on the client side if the connection was reset; the sockets
/// close when the caller drops them.
fn finish(shared: &Shared, client: &TcpStream, control: &ConnControl) {
    if control.reset.load(Ordering::Acquire) {
        super::reset_now(client);
        shared.counters.reset.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a pump stopped.
#[derive(Debug, PartialEq, Eq)]
enum PumpEnd {
    /// The reader reached end of stream and everything was delivered.
    Eof,
    /// A `close_after` budget is spent.
    Close,
    /// Reading or writing failed.
    Failed,
    /// The connection was cancelled.
    Cancelled,
}

/// The faults that apply to one direction, reduced to what a pump does.
#[derive(Default)]
struct Plan {
    blackhole: bool,
    /// Summed latency: mean and jitter, milliseconds.
    latency: Option<(u64, u64)>,
    /// Smallest rate.
    bytes_per_sec: Option<u64>,
    /// Smallest write and longest pause between writes.
    slice: Option<(usize, Duration)>,
    /// `close_after` faults: id, direction counted, budget.
    close_after: Vec<(FaultId, Direction, u64)>,
}

impl Plan {
    fn new(faults: &[(FaultId, Fault)], flow: Direction) -> Plan {
        let mut plan = Plan::default();
        for (id, fault) in faults {
            match *fault {
                Fault::Blackhole { direction } if direction.applies_to(flow) => {
                    plan.blackhole = true;
                }
                Fault::Latency {
                    ms,
                    jitter_ms,
                    direction,
                } if direction.applies_to(flow) => {
                    let (sum_ms, sum_jitter) = plan.latency.unwrap_or((0, 0));
                    plan.latency = Some((sum_ms + ms, sum_jitter + jitter_ms));
                }
                Fault::Bandwidth {
                    bytes_per_sec,
                    direction,
                } if direction.applies_to(flow) => {
                    let rate = bytes_per_sec.max(1);
                    plan.bytes_per_sec = Some(plan.bytes_per_sec.map_or(rate, |r| r.min(rate)));
                }
                Fault::Slice {
                    max_bytes,
                    delay_us,
                    direction,
                } if direction.applies_to(flow) => {
                    let max_bytes = max_bytes.max(1);
                    let delay = Duration::from_micros(delay_us);
                    plan.slice = Some(match plan.slice {
                        Some((size, pause)) => (size.min(max_bytes), pause.max(delay)),
                        None => (max_bytes, delay),
                    });
                }
                Fault::CloseAfter { bytes, direction } if direction.applies_to(flow) => {
                    plan.close_after.push((*id, direction, bytes));
                }
                _ => {}
            }
        }
        plan
    }

    fn is_pass_through(&self) -> bool {
        !self.blackhole
            && self.latency.is_none()
            && self.bytes_per_sec.is_none()
            && self.slice.is_none()
            && self.close_after.is_empty()
    }

    fn sample_delay(&self) -> Duration {
        match self.latency {
            None => Duration::ZERO,
            Some((ms, 0)) => Duration::from_millis(ms),
            Some((ms, jitter)) => {
                let offset = fastrand::u64(0..=2 * jitter);
                Duration::from_millis((ms + offset).saturating_sub(jitter))
            }
        }
    }
}

/// A chunk read and not yet written.
struct Pending {
    data: Bytes,
    due: Instant,
}

/// One direction of a connection.
struct Pump<'a> {
    shared: &'a Shared,
    flow: Direction,
    forwarded: &'a Forwarded,
    cancel: &'a CancellationToken,
    faults: watch::Receiver<FaultSet>,
    plan: Plan,
    /// Where each `close_after` fault started counting: the total of its
    /// direction when this pump first saw it.
    close_after_start: Vec<(FaultId, u64)>,
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    /// Earliest time of the next write under bandwidth or slice pacing.
    next_write: Instant,
    reader_done: bool,
}

impl<'a> Pump<'a> {
    fn new(
        shared: &'a Shared,
        flow: Direction,
        forwarded: &'a Forwarded,
        cancel: &'a CancellationToken,
    ) -> Pump<'a> {
        let mut pump = Pump {
            shared,
            flow,
            forwarded,
            cancel,
            faults: shared.faults.subscribe(),
            plan: Plan::default(),
            close_after_start: Vec::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_write: Instant::now(),
            reader_done: false,
        };
        pump.refresh();
        pump
    }

    /// Takes the current fault set into account.
    fn refresh(&mut self) {
        let faults = Arc::clone(&self.faults.borrow_and_update());
        self.plan = Plan::new(&faults, self.flow);
        let forwarded = self.forwarded;
        let previous = std::mem::take(&mut self.close_after_start);
        self.close_after_start = self
            .plan
            .close_after
            .iter()
            .map(|&(id, direction, _)| {
                let start = previous
                    .iter()
                    .find(|(known, _)| *known == id)
                    .map_or_else(|| forwarded.total(direction), |&(_, start)| start);
                (id, start)
            })
            .collect();
    }

    /// Bytes this pump may still forward before a `close_after` closes the
    /// connection; `None` without such a fault.
    fn close_after_allowance(&self) -> Option<u64> {
        self.plan
            .close_after
            .iter()
            .zip(&self.close_after_start)
            .map(|(&(_, direction, budget), &(_, start))| {
                let counted = self.forwarded.total(direction).saturating_sub(start);
                budget.saturating_sub(counted)
            })
            .min()
    }

    fn count(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.forwarded
            .counter(self.flow)
            .fetch_add(bytes, Ordering::Relaxed);
        let total = match self.flow {
            Direction::Downstream => &self.shared.counters.bytes_downstream,
            _ => &self.shared.counters.bytes_upstream,
        };
        total.fetch_add(bytes, Ordering::Relaxed);
    }

    async fn run(mut self, mut reader: ReadHalf<'_>, mut writer: WriteHalf<'_>) -> PumpEnd {
        let mut buffer = vec![0; READ_BUFFER];
        let mut read_buffer = BytesMut::new();
        loop {
            let step = if self.plan.is_pass_through() && self.queue.is_empty() {
                self.pass_through(&mut reader, &mut writer, &mut buffer)
                    .await
            } else {
                self.shaped(&mut reader, &mut writer, &mut read_buffer)
                    .await
            };
            match step {
                Step::Continue => {}
                Step::End(end) => return end,
            }
            if self.reader_done && self.queue.is_empty() && !self.plan.blackhole {
                // Half-close: the peer sees end of stream, the other way
                // goes on. An error here means the peer is gone already.
                let _ = writer.shutdown().await;
                return PumpEnd::Eof;
            }
        }
    }

    /// The fast path: read into `buffer`, write it out as is.
    async fn pass_through(
        &mut self,
        reader: &mut ReadHalf<'_>,
        writer: &mut WriteHalf<'_>,
        buffer: &mut [u8],
    ) -> Step {
        // Wakes on cancellation, on a change of the fault set (which may
        // switch this pump to the shaped path) and on data.
        let read = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Step::End(PumpEnd::Cancelled),
            changed = self.faults.changed() => return self.on_fault_change(changed.is_ok()),
            read = reader.read(buffer) => read,
        };
        match read {
            Ok(0) => {
                self.reader_done = true;
                Step::Continue
            }
            Ok(n) => self.write(writer, &buffer[..n]).await,
            Err(_) => Step::End(PumpEnd::Failed),
        }
    }

    /// The path with faults: read into the queue, write from it when due.
    async fn shaped(
        &mut self,
        reader: &mut ReadHalf<'_>,
        writer: &mut WriteHalf<'_>,
        read_buffer: &mut BytesMut,
    ) -> Step {
        let can_read = !self.plan.blackhole && !self.reader_done && self.queued_bytes < MAX_QUEUED;
        let write_at = match self.queue.front() {
            Some(head) if !self.plan.blackhole => Some(head.due.max(self.next_write)),
            _ => None,
        };
        if write_at.is_some_and(|at| at <= Instant::now()) {
            // Due already: write without a timer, which would round up to
            // the next millisecond and make every slice cost one.
            return self.write_piece(writer).await;
        }
        if can_read && read_buffer.capacity() < READ_BUFFER / 2 {
            read_buffer.reserve(READ_BUFFER);
        }
        // Wakes on cancellation, on a change of the fault set, on data
        // (unless held or the queue is full) and when the head of the queue
        // is due (unless held).
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Step::End(PumpEnd::Cancelled),
            changed = self.faults.changed() => self.on_fault_change(changed.is_ok()),
            read = reader.read_buf(read_buffer), if can_read => match read {
                Ok(0) => {
                    self.reader_done = true;
                    Step::Continue
                }
                Ok(n) => {
                    let now = Instant::now();
                    let mut due = now + self.plan.sample_delay();
                    if let Some(last) = self.queue.back() {
                        due = due.max(last.due);
                    }
                    self.queue.push_back(Pending { data: read_buffer.split().freeze(), due });
                    self.queued_bytes += n;
                    Step::Continue
                }
                Err(_) => Step::End(PumpEnd::Failed),
            },
            () = sleep_until(write_at), if write_at.is_some() => self.write_piece(writer).await,
        }
    }

    fn on_fault_change(&mut self, channel_open: bool) -> Step {
        if !channel_open {
            // The proxy is gone (cannot happen while `shared` is borrowed,
            // but a closed channel must not make the loop spin).
            return Step::End(PumpEnd::Cancelled);
        }
        self.refresh();
        Step::Continue
    }

    /// Writes the next piece of the queue's head, as slice, bandwidth and
    /// `close_after` allow, then sets when the next piece may go.
    async fn write_piece(&mut self, writer: &mut WriteHalf<'_>) -> Step {
        let allowance = self.close_after_allowance();
        let Some(head) = self.queue.front_mut() else {
            return Step::Continue;
        };
        let mut len = head.data.len();
        if let Some((max_bytes, _)) = self.plan.slice {
            len = len.min(max_bytes);
        }
        if let Some(rate) = self.plan.bytes_per_sec {
            len = len.min(
                usize::try_from(rate / BANDWIDTH_WRITES_PER_SEC)
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        }
        if let Some(allowance) = allowance {
            if allowance == 0 {
                return Step::End(PumpEnd::Close);
            }
            len = len.min(usize::try_from(allowance).unwrap_or(usize::MAX));
        }
        let piece = head.data.split_to(len);
        if head.data.is_empty() {
            self.queue.pop_front();
        }
        self.queued_bytes -= len;

        let started = Instant::now();
        if let Step::End(end) = self.write(writer, &piece).await {
            return Step::End(end);
        }
        if let Some(rate) = self.plan.bytes_per_sec {
            // Pacing from the later of the planned time and now, so an idle
            // spell does not bank a burst.
            let cost = Duration::from_secs_f64(len as f64 / rate as f64);
            self.next_write = self.next_write.max(started) + cost;
        }
        if let Some((_, pause)) = self.plan.slice {
            self.next_write = self.next_write.max(Instant::now() + pause);
        }
        Step::Continue
    }

    /// Writes `bytes` whole, counts them, and ends the pump if that spent a
    /// `close_after` budget.
    async fn write(&mut self, writer: &mut WriteHalf<'_>, bytes: &[u8]) -> Step {
        // `write_all` is not cancel safe, but cancellation ends the
        // connection, so bytes lost with it do not matter.
        let written = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Step::End(PumpEnd::Cancelled),
            written = writer.write_all(bytes) => written,
        };
        if written.is_err() {
            return Step::End(PumpEnd::Failed);
        }
        self.count(bytes.len());
        if self.close_after_allowance() == Some(0) {
            return Step::End(PumpEnd::Close);
        }
        Step::Continue
    }
}

/// What a pump does after one step.
enum Step {
    Continue,
    End(PumpEnd),
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
