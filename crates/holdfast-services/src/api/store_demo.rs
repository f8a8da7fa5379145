//! The metrics demo's store (`/api/store/*`): a few figures kept in memory
//! (customers waiting, looking around, served, in the store) and mirrored
//! in counters and gauges on `/metrics`. It touches neither the database
//! nor the cache.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use bytes::Bytes;
use holdfast_core::metric_names;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use crate::problem::responses::{BodyProblems, Conflict};
use crate::problem::{ApiError, declares_json, from_json};

/// The store demo's routes.
// The GET forms are marked deprecated for the document, which reads it
// from the handlers' `#[deprecated]`; registering them is no use of them.
#[allow(deprecated)]
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(store_figures))
        .routes(routes!(store_join))
        .routes(routes!(store_look_around))
        .routes(routes!(store_served))
        .routes(routes!(store_leave))
        .routes(routes!(store_simulate))
        // A demo convenience: the steps also answer GET, as the quick
        // start of the service this demo reproduces used them (`curl
        // …/api/store/join`). Documented as deprecated, since a GET that
        // changes state is no API to build on: POST is the form to use.
        .routes(routes!(store_join_by_get))
        .routes(routes!(store_look_around_by_get))
        .routes(routes!(store_served_by_get))
        .routes(routes!(store_leave_by_get))
}

/// The `service` label of every store demo metric.
const STORE_SERVICE: &str = "store";

/// Customers a simulation runs when the body names none.
pub const DEFAULT_SIMULATED_CUSTOMERS: u32 = 10;

/// Most customers one simulation may run.
pub const MAX_SIMULATED_CUSTOMERS: u32 = 1000;

/// The store demo's figures. Each one is changed only by a checked atomic
/// step, so concurrent requests never take a figure below zero; a response
/// reads the four figures one after the other, so under concurrent
/// requests they may come from slightly different moments.
#[derive(Default)]
pub(super) struct StoreFigures {
    waiting: AtomicU64,
    active: AtomicU64,
    served: AtomicU64,
    total: AtomicU64,
}

/// The store demo's figures as answered.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct StoreFiguresSchema {
    /// Customers who joined and wait to look around.
    pub waiting: u64,
    /// Customers looking around, not yet served.
    pub active: u64,
    /// Customers served since the api started.
    pub served: u64,
    /// Customers in the store: joined and not yet left.
    pub total: u64,
}

/// A simulation to run; unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateSchema {
    /// Customers to run through the store, 1 to 1000 (default 10 when
    /// absent or `null`).
    #[schema(minimum = 1, maximum = 1000)]
    pub customers: Option<u32>,
}

/// A store demo event, the `event` label of `user_events_total`.
#[derive(Clone, Copy)]
enum StoreEvent {
    Joined,
    LookingAround,
    Served,
    Left,
}

impl StoreEvent {
    fn as_str(self) -> &'static str {
        match self {
            StoreEvent::Joined => "joined",
            StoreEvent::LookingAround => "looking_around",
            StoreEvent::Served => "served",
            StoreEvent::Left => "left",
        }
    }
}

/// Takes one from `figure` unless it is zero; false when it was.
fn take_one(figure: &AtomicU64) -> bool {
    figure
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl StoreFigures {
    fn snapshot(&self) -> StoreFiguresSchema {
        StoreFiguresSchema {
            waiting: self.waiting.load(Ordering::Acquire),
            active: self.active.load(Ordering::Acquire),
            served: self.served.load(Ordering::Acquire),
            total: self.total.load(Ordering::Acquire),
        }
    }

    /// Counts `count` events of one kind.
    fn record(event: StoreEvent, count: u64) {
        metrics::counter!(
            metric_names::STORE_USER_EVENTS,
            "event" => event.as_str(),
            "service" => STORE_SERVICE
        )
        .increment(count);
    }

    /// Sets the gauges to the current figures and returns them.
    fn publish(&self) -> StoreFiguresSchema {
        let now = self.snapshot();
        for (name, value) in [
            (metric_names::STORE_USERS_WAITING, now.waiting),
            (metric_names::STORE_USERS_ACTIVE, now.active),
            (metric_names::STORE_USERS_SERVED, now.served),
            (metric_names::STORE_USERS_TOTAL, now.total),
        ] {
            // Figures stay far below 2^53, so the conversion is exact.
            metrics::gauge!(name, "service" => STORE_SERVICE).set(value as f64);
        }
        now
    }

    fn join(&self) -> StoreFiguresSchema {
        self.total.fetch_add(1, Ordering::AcqRel);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::Joined, 1);
        self.publish()
    }

    fn look_around(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.waiting) {
            return Err(ApiError::conflict(
                "nobody_waiting",
                "no customer is waiting to look around",
            ));
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::LookingAround, 1);
        Ok(self.publish())
    }

    fn serve(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.active) {
            return Err(ApiError::conflict(
                "nobody_active",
                "no customer is looking around to be served",
            ));
        }
        self.served.fetch_add(1, Ordering::AcqRel);
        Self::record(StoreEvent::Served, 1);
        Ok(self.publish())
    }

    fn leave(&self) -> Result<StoreFiguresSchema, ApiError> {
        if !take_one(&self.total) {
            return Err(ApiError::conflict(
                "nobody_in_store",
                "no customer is in the store to leave",
            ));
        }
        // Whoever leaves was somewhere: once everyone served has gone, a
        // customer leaving gave up waiting (or looking around), and the
        // figures keep waiting + active within total.
        let total = self.total.load(Ordering::Acquire);
        if self.waiting.load(Ordering::Acquire) + self.active.load(Ordering::Acquire) > total
            && !take_one(&self.waiting)
        {
            take_one(&self.active);
        }
        Self::record(StoreEvent::Left, 1);
        Ok(self.publish())
    }

    /// Runs `customers` through join, look-around, served and leave at
    /// once. Each passes every step, so waiting, active and total end where
    /// they started and are not touched; only served grows, and every event
    /// is counted.
    fn simulate(&self, customers: u32) -> StoreFiguresSchema {
        let n = u64::from(customers);
        for event in [
            StoreEvent::Joined,
            StoreEvent::LookingAround,
            StoreEvent::Served,
            StoreEvent::Left,
        ] {
            Self::record(event, n);
        }
        self.served.fetch_add(n, Ordering::AcqRel);
        self.publish()
    }
}

/// The number of customers from an optional simulate body: a body that
/// is not blank must be declared JSON (415 otherwise, as every JSON body
/// of the api).
fn simulated_customers(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<u32, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_SIMULATED_CUSTOMERS);
    }
    if !declares_json(headers) {
        return Err(ApiError::unsupported_media_type());
    }
    // `null` is the schema's "no body"; an array is no SimulateSchema.
    let request: Option<SimulateSchema> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "the body must be a JSON object (or null)",
            ));
        }
        _ => from_json(&body)?,
    };
    let customers = request
        .and_then(|r| r.customers)
        .unwrap_or(DEFAULT_SIMULATED_CUSTOMERS);
    if !(1..=MAX_SIMULATED_CUSTOMERS).contains(&customers) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("`customers` must be from 1 to {MAX_SIMULATED_CUSTOMERS}"),
        ));
    }
    Ok(customers)
}

/// The store demo's current figures.
#[utoipa::path(
    get,
    path = "/api/store",
    tag = "store",
    responses(
        (status = 200, description = "The current figures", body = StoreFiguresSchema),
    )
)]
async fn store_figures(State(state): State<ApiState>) -> Json<StoreFiguresSchema> {
    Json(state.shop.snapshot())
}

/// A customer joins the store and waits.
#[utoipa::path(
    post,
    path = "/api/store/join",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the join", body = StoreFiguresSchema),
    )
)]
async fn store_join(State(state): State<ApiState>) -> Json<StoreFiguresSchema> {
    Json(state.shop.join())
}

/// A waiting customer starts looking around.
///
/// 409 `nobody_waiting` when nobody is waiting; nothing changes then.
#[utoipa::path(
    post,
    path = "/api/store/look-around",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
async fn store_look_around(
    State(state): State<ApiState>,
) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.look_around().map(Json)
}

/// A customer looking around is served.
///
/// 409 `nobody_active` when nobody is looking around; nothing changes
/// then.
#[utoipa::path(
    post,
    path = "/api/store/served",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
async fn store_served(State(state): State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.serve().map(Json)
}

/// A customer leaves the store.
///
/// 409 `nobody_in_store` when nobody is in the store; nothing changes
/// then.
#[utoipa::path(
    post,
    path = "/api/store/leave",
    tag = "store",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
async fn store_leave(State(state): State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    state.shop.leave().map(Json)
}

/// Runs customers through join, look-around, served and leave at once.
///
/// 400 for malformed JSON; 415 for a body not declared as JSON; 422
/// `invalid_body` when `customers` is not from 1 to 1000 or a field is
/// unknown.
#[utoipa::path(
    post,
    path = "/api/store/simulate",
    tag = "store",
    request_body(content = Option<SimulateSchema>, description = "Optional; `customers` defaults to 10"),
    responses(
        (status = 200, description = "The figures after the simulation", body = StoreFiguresSchema),
        BodyProblems,
    )
)]
async fn store_simulate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StoreFiguresSchema>, ApiError> {
    let customers = simulated_customers(&headers, body)?;
    Ok(Json(state.shop.simulate(customers)))
}

/// A customer joins the store: the same as `POST`, kept for the quick
/// start this demo reproduces.
#[utoipa::path(
    get,
    path = "/api/store/join",
    tag = "store",
    operation_id = "store_join_by_get",
    responses(
        (status = 200, description = "The figures after the join", body = StoreFiguresSchema),
    )
)]
#[deprecated = "a GET that changes state: use POST"]
async fn store_join_by_get(state: State<ApiState>) -> Json<StoreFiguresSchema> {
    store_join(state).await
}

/// A waiting customer starts looking around: the same as `POST`.
#[utoipa::path(
    get,
    path = "/api/store/look-around",
    tag = "store",
    operation_id = "store_look_around_by_get",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
#[deprecated = "a GET that changes state: use POST"]
async fn store_look_around_by_get(
    state: State<ApiState>,
) -> Result<Json<StoreFiguresSchema>, ApiError> {
    store_look_around(state).await
}

/// A customer looking around is served: the same as `POST`.
#[utoipa::path(
    get,
    path = "/api/store/served",
    tag = "store",
    operation_id = "store_served_by_get",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
#[deprecated = "a GET that changes state: use POST"]
async fn store_served_by_get(state: State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    store_served(state).await
}

/// A customer leaves the store: the same as `POST`.
#[utoipa::path(
    get,
    path = "/api/store/leave",
    tag = "store",
    operation_id = "store_leave_by_get",
    responses(
        (status = 200, description = "The figures after the step", body = StoreFiguresSchema),
        Conflict,
    )
)]
#[deprecated = "a GET that changes state: use POST"]
async fn store_leave_by_get(state: State<ApiState>) -> Result<Json<StoreFiguresSchema>, ApiError> {
    store_leave(state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(store: &StoreFigures) -> [u64; 4] {
        let now = store.snapshot();
        [now.waiting, now.active, now.served, now.total]
    }

    #[test]
    fn a_customer_leaving_before_being_served_leaves_the_figures_whole() {
        let store = StoreFigures::default();
        for _ in 0..4 {
            store.join();
        }
        // [waiting, active, served, total]: the one who left was waiting.
        store.leave().unwrap();
        assert_eq!(figures(&store), [3, 0, 0, 3]);
        store.look_around().unwrap();
        assert_eq!(figures(&store), [2, 1, 0, 3]);
        store.serve().unwrap();
        // A served customer leaves first: nobody else is moved.
        store.leave().unwrap();
        assert_eq!(figures(&store), [2, 0, 1, 2]);
        store.leave().unwrap();
        store.leave().unwrap();
        assert_eq!(figures(&store), [0, 0, 1, 0]);
        assert!(store.leave().is_err());
    }
}
