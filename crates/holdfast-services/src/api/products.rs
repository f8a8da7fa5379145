//! Products: one by id and pages of the list, both through the products
//! cache (reads only; products are the seeded demo data and change only when the database is seeded).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use holdfast_store::{Entity, Product};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::cached::{CachedMissing, CachedRead, cached_response, load_error, read_by_id};
use super::extract::{EntityId, PageParams, RawQuery, bounded, page_limit, query};
use super::schemas::{CachedProductPageSchema, CachedProductSchema};
use crate::problem::ApiError;
use crate::problem::responses::{BadRequest, ServiceUnavailable};

/// Largest offset into the product list; beyond the seed data by far, and
/// small enough that a page key stays short.
pub const MAX_OFFSET: u32 = 1_000_000;

/// The products routes.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(get_product))
}

/// A page of products in id order, through the products cache.
///
/// 400 for a bad `limit` (`invalid_limit`) or `offset`
/// (`invalid_offset`); 503 when the database is unavailable and nothing is
/// cached.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "products",
    params(PageParams),
    responses(
        CachedRead<CachedProductPageSchema>,
        BadRequest,
        ServiceUnavailable,
    )
)]
async fn list_products(
    State(state): State<ApiState>,
    raw: Result<Query<RawQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = query(raw)?;
    let limit = page_limit(raw.limit.as_deref())?;
    let offset = bounded(
        raw.offset.as_deref(),
        "offset",
        "invalid_offset",
        0..=MAX_OFFSET,
        0,
    )?;
    let store = state.store.clone();
    let cached = state
        .products
        .get(&format!("page:{limit}:{offset}"), move || async move {
            store
                .products(limit, offset)
                .await
                .map(Some)
                .map_err(load_error)
        })
        .await?;
    Ok(cached_response::<Vec<Product>>(cached, || {
        ApiError::not_found("no such page")
    }))
}

/// One product, through the products cache.
///
/// 400 `invalid_id` when the id is not a positive integer; 503 when the
/// database is unavailable and nothing is cached.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "Product id", minimum = 1)),
    responses(
        CachedRead<CachedProductSchema>,
        BadRequest,
        CachedMissing,
        ServiceUnavailable,
    )
)]
async fn get_product(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let store = state.store.clone();
    read_by_id(&state.products, id, Entity::Product, move |id| async move {
        store.product(id).await
    })
    .await
}
