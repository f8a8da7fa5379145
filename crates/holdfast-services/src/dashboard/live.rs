//! `GET /api/dashboard/events`: the state, once a second, over server-sent
//! events.
//!
//! One task reads the state and renders it; every subscriber gets the same
//! [`Snapshot`] through a watch channel, so the cost does not grow with the
//! number of open pages, and nothing is read while nobody listens. A
//! subscriber that goes away drops its receiver and its stream; nothing of
//! it is left behind.
//!
//! The same task takes the charts' point every second, listened to or not,
//! so that the charts hold five minutes when a page opens.
//!
//! Each second brings four events: `overview`, the live part of the page
//! as HTML rendered by the same template as the page itself (the page swaps
//! it in), `charts` and `stack` (processes and events) likewise, and
//! `state`, the same state as `GET /api/dashboard/state`'s JSON, for
//! scripts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use holdfast_resilience::Tasks;
use tokio::sync::watch;

use super::charts::Charts;
use super::state::Reader;
use super::{ChartsFragment, LiveFragment, StackFragment};

/// How often the state is read while anyone listens.
pub const LIVE_INTERVAL: Duration = super::charts::EVERY;

/// One reading, ready to send.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The live part of the overview page.
    html: String,
    /// The charts.
    charts: String,
    /// The stack's processes and events.
    stack: String,
    /// The state as JSON.
    json: String,
}

/// The subscribers' side of the reading task.
#[derive(Clone, Debug)]
pub struct Live {
    sender: Arc<watch::Sender<Arc<Snapshot>>>,
    /// The charts' points.
    pub charts: Arc<Charts>,
}

impl Live {
    /// Open event streams now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Starts the reading task on `tasks`.
    pub fn start(reader: Arc<Reader>, charts: Arc<Charts>, tasks: &Tasks) -> Live {
        let (sender, _) = watch::channel(Arc::new(Snapshot::default()));
        let sender = Arc::new(sender);
        let live = Live {
            sender: sender.clone(),
            charts: charts.clone(),
        };
        let stop = tasks.clone();
        tasks.spawn(async move {
            // A tick every second, whatever a slow instance costs a read;
            // ticks missed while reading are skipped, not bunched.
            let mut every = tokio::time::interval(LIVE_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = stop.stopping() => return,
                    _ = every.tick() => {}
                }
                let known = reader.known();
                charts.retain(&known);
                charts
                    .sample(
                        reader.client(),
                        &known,
                        holdfast_core::Deadline::now_unix_ms(),
                    )
                    .await;
                if sender.receiver_count() > 0 {
                    let snapshot = read(&reader, &charts).await;
                    sender.send_replace(Arc::new(snapshot));
                }
            }
        });
        live
    }
}

async fn read(reader: &Reader, charts: &Charts) -> Snapshot {
    let state = reader.read().await;
    let charts = ChartsFragment::new(&charts.ticks(), state.stack.as_ref())
        .render()
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "the live charts did not render");
            String::new()
        })
        .replace('\r', "");
    let html = LiveFragment { state: &state }
        .render()
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "the live overview did not render");
            String::new()
        })
        // An event's data may not hold a carriage return.
        .replace('\r', "");
    let stack = StackFragment { state: &state }
        .render()
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "the stack's processes did not render");
            String::new()
        })
        .replace('\r', "");
    let json = serde_json::to_string(&state).unwrap_or_default();
    Snapshot {
        html,
        charts,
        stack,
        json,
    }
}

/// The live state, once a second, as server-sent events: `overview` (the
/// live part of the overview page, HTML), `charts` (the charts, HTML with
/// inline SVG), `stack` (the stack's processes and events, HTML) and
/// `state` (the JSON of `GET /api/dashboard/state`).
#[utoipa::path(
    get,
    path = "/api/dashboard/events",
    tag = "overview",
    responses((status = 200, description = "An event stream (text/event-stream) of `overview`, `charts`, `stack` and `state` events, one of each a second", content_type = "text/event-stream", body = String))
)]
pub(super) async fn events(
    Extension(live): Extension<Live>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = live.sender.subscribe();
    let stream =
        futures_util::stream::unfold((receiver, true), |(mut receiver, first)| async move {
            // The first reading is sent as soon as there is one; after it,
            // each new reading.
            if !first || receiver.borrow().html.is_empty() {
                receiver.changed().await.ok()?;
            }
            let snapshot = receiver.borrow_and_update().clone();
            let events = [
                Ok(Event::default().event("overview").data(&snapshot.html)),
                Ok(Event::default().event("charts").data(&snapshot.charts)),
                Ok(Event::default().event("stack").data(&snapshot.stack)),
                Ok(Event::default().event("state").data(&snapshot.json)),
            ];
            Some((futures_util::stream::iter(events), (receiver, false)))
        });
    Sse::new(futures_util::StreamExt::flatten(stream)).keep_alive(KeepAlive::default())
}
