//! Orders, read and written in the store directly. Placing one first asks
//! the users endpoint over HTTP (see `users_client.rs`) whether the user
//! exists, so a dead users side gives a quick 503, never a hang.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_store::{Entity, NewOrder, Order, StoreError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::extract::EntityId;
use super::schemas::{Created, NewOrderSchema, OrderSchema};
use crate::http::located;
use crate::problem::responses::{BadGateway, BodyProblems, ByIdProblems, ServiceUnavailable};
use crate::problem::{ApiError, ApiJson};

/// The orders routes.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_order))
        .routes(routes!(get_order))
}

/// 422 `unknown_user`: the users endpoint does not know `id`.
fn unknown_user(id: i64) -> ApiError {
    ApiError::unprocessable("unknown_user", format!("user {id} does not exist"))
}

/// 422 `unknown_product`: the store has no product `id`.
fn unknown_product(id: i64) -> ApiError {
    ApiError::unprocessable("unknown_product", format!("product {id} does not exist"))
}

/// Places an order once the users endpoint, called over HTTP, knows the
/// user.
///
/// 400 for malformed JSON; 415 for a body not declared as JSON; 422 for
/// an unknown user (`unknown_user`) or product (`unknown_product`), a bad
/// quantity or an unknown field; 502 `users_bad_response` when the users
/// endpoint answered unexpectedly; 503 with `Retry-After` when the users
/// endpoint (`users_unavailable`) or the database is unavailable.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    request_body = NewOrderSchema,
    responses(
        Created<OrderSchema>,
        BodyProblems,
        BadGateway,
        ServiceUnavailable,
    )
)]
async fn create_order(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    ApiJson(new): ApiJson<NewOrder>,
) -> Result<Response, ApiError> {
    // Ids below 1 exist nowhere; the users endpoint would call them bad.
    if new.user_id < 1 {
        return Err(unknown_user(new.user_id));
    }
    if !state
        .users_client
        .user_exists(new.user_id, &headers)
        .await?
    {
        return Err(unknown_user(new.user_id));
    }
    let order = state
        .store
        .create_order(new)
        .await
        .map_err(|err| match err {
            StoreError::NotFound {
                entity: Entity::Product,
                id,
            } => unknown_product(id),
            // Deleted between the lookup and the insert.
            StoreError::NotFound {
                entity: Entity::User,
                id,
            } => unknown_user(id),
            other => other.into(),
        })?;
    let location = format!("/api/orders/{}", order.id);
    Ok(located(StatusCode::CREATED, &location, order))
}

/// One order, from the database.
///
/// 400 `invalid_id` when the id is not a positive integer.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    params(("id" = i64, Path, description = "Order id", minimum = 1)),
    responses(
        (status = 200, description = "The order", body = OrderSchema),
        ByIdProblems,
    )
)]
async fn get_order(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = EntityId::parse(&id)?;
    state
        .store
        .order(id.get())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::no_such(Entity::Order, id.get()))
}
