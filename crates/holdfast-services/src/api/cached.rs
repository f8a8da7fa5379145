//! Reads through the cache, as every cached read answers them: the value
//! wrapped as `{"source", "data"}` with an `X-Cache` header, or a 404 that
//! still carries `X-Cache` (a "not found" is cached too); and the same
//! answers as the OpenAPI document states them ([`CachedRead`],
//! [`CachedMissing`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;

use axum::Json;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use holdfast_cache::{Cached, LoadError, ReadThrough};
use holdfast_store::{Entity, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use super::extract::EntityId;
use super::schemas::x_cache_header;
use crate::problem::ApiError;
use crate::problem::responses::documented_problem;

/// The response header saying where a read was answered from.
pub const X_CACHE: &str = "x-cache";

/// A store failure as a cache loader error: only its code travels, so no
/// driver text can reach a client through the cache.
pub(crate) fn load_error(err: StoreError) -> LoadError {
    tracing::warn!(error = %err, "cache loader failed");
    if err.is_retryable() {
        LoadError::retryable(err.code())
    } else {
        LoadError::permanent(err.code())
    }
}

/// One entity by id through its cache: `{source, data}` with `X-Cache`, or
/// a 404 naming the entity.
pub(super) async fn read_by_id<T, F, Fut>(
    cache: &ReadThrough,
    id: EntityId,
    entity: Entity,
    load: F,
) -> Result<Response, ApiError>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce(i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<T>, StoreError>> + Send + 'static,
{
    let cached = cache
        .get(&id.key(), move || async move {
            load(id.get()).await.map_err(load_error)
        })
        .await?;
    Ok(cached_response::<T>(cached, || {
        ApiError::no_such(entity, id.get())
    }))
}

/// `{"source", "data"}` with `X-Cache`, or the 404 problem `missing`
/// (still with `X-Cache`).
pub(super) fn cached_response<T: Serialize>(
    cached: Cached<T>,
    missing: impl FnOnce() -> ApiError,
) -> Response {
    let x_cache = HeaderValue::from_static(cached.x_cache());
    let mut response = match cached.value {
        Some(value) => {
            Json(json!({"source": cached.source.as_str(), "data": value})).into_response()
        }
        None => missing().into_response(),
    };
    response.headers_mut().insert(X_CACHE, x_cache);
    response
}

/// The document's 200 of a read through the cache: `T` (a
/// `{source, data}` schema) with `X-Cache`.
pub(super) struct CachedRead<T>(PhantomData<T>);

impl<T: ToSchema> IntoResponses for CachedRead<T> {
    fn responses() -> BTreeMap<String, RefOr<DocResponse>> {
        let ok = ResponseBuilder::new()
            .description("The value, with where it was answered from (`source` and `X-Cache`)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(T::name())))
                    .build(),
            )
            .header("X-Cache", x_cache_header())
            .build();
        BTreeMap::from([("200".to_owned(), ok.into())])
    }
}

/// The document's 404 of a read by id through the cache: a problem that
/// also carries `X-Cache`, since a "not found" is cached too.
pub(super) struct CachedMissing;

impl IntoResponses for CachedMissing {
    fn responses() -> BTreeMap<String, RefOr<DocResponse>> {
        let mut missing = documented_problem(
            "No such resource (`not_found`); a \"not found\" is cached like a value",
            false,
        );
        missing
            .headers
            .insert("X-Cache".to_owned(), RefOr::T(x_cache_header()));
        BTreeMap::from([("404".to_owned(), missing.into())])
    }
}
