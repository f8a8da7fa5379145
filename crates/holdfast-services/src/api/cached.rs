//! Reads through the cache, as every cached read answers them: the value
//! wrapped as `{"source", "data"}` with an `X-Cache` header, or a 404 that
//! still carries `X-Cache` (a "not found" is cached too).

use std::future::Future;

use axum::Json;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use holdfast_cache::{Cached, LoadError, ReadThrough};
use holdfast_store::{Entity, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::extract::EntityId;
use crate::problem::ApiError;

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
