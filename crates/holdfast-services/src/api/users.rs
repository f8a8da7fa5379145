//! Users: one by id through the users cache, search straight from the
//! database, and writes that invalidate the user's cache key so the next
//! read sees the change.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holdfast_store::{Entity, NewUser, UpdateUser};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::cached::{CachedMissing, CachedRead, read_by_id};
use super::extract::{EntityId, RawQuery, SearchParams, page_limit, query};
use super::schemas::{CachedUserSchema, Created, NewUserSchema, UpdateUserSchema, UserSchema};
use crate::http::located;
use crate::problem::responses::{BadRequest, BodyProblems, Conflict, NotFound, ServiceUnavailable};
use crate::problem::{ApiError, ApiJson};

/// Longest user search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;

/// The users routes.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(search_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(create_user))
}

/// The search text: required, 1 to [`MAX_SEARCH_CHARS`] characters after
/// trimming, without control characters. Other characters are allowed:
/// the store matches them literally and sends them as a bind parameter.
/// Control characters are refused because no name or email holds one and
/// engines treat them apart (SQLite's `LIKE` stops at a NUL byte, so
/// `q=%00` would match every user).
fn search_text(raw: Option<String>) -> Result<String, ApiError> {
    let text = raw.unwrap_or_default().trim().to_owned();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_SEARCH_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`q` is required and must have 1 to {MAX_SEARCH_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`q` must not hold control characters",
        ));
    }
    Ok(text)
}

/// One user, through the users cache.
///
/// 400 `invalid_id` when the id is not a positive integer; 503 when the
/// database is unavailable and nothing is cached.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    responses(
        CachedRead<CachedUserSchema>,
        BadRequest,
        CachedMissing,
        ServiceUnavailable,
    )
)]
async fn get_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let store = state.store.clone();
    read_by_id(&state.users, id, Entity::User, move |id| async move {
        store.user(id).await
    })
    .await
}

/// Users whose name or email contains `q` (literally, ignoring ASCII case),
/// from the database.
///
/// 400 when `q` is missing or bad (`invalid_query`) or `limit` is
/// (`invalid_limit`).
#[utoipa::path(
    get,
    path = "/api/users/search",
    tag = "users",
    params(SearchParams),
    responses(
        (status = 200, description = "Matching users, in id order", body = [UserSchema]),
        BadRequest,
        ServiceUnavailable,
    )
)]
async fn search_users(
    State(state): State<ApiState>,
    raw: Result<Query<RawQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = query(raw)?;
    let text = search_text(raw.q)?;
    let limit = page_limit(raw.limit.as_deref())?;
    let users = state.store.search_users(&text, limit).await?;
    Ok(Json(users).into_response())
}

/// Creates a user.
///
/// 400 for malformed JSON; 409 `conflict` when the email is already used;
/// 415 for a body not declared as JSON; 422 for an invalid name or email,
/// or an unknown field.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = NewUserSchema,
    responses(
        Created<UserSchema>,
        BodyProblems,
        Conflict,
        ServiceUnavailable,
    )
)]
async fn create_user(
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    let user = state.store.create_user(new).await?;
    // The id may have been looked up (and "not found" cached) before.
    state.users.invalidate(&user.id.to_string()).await;
    let location = format!("/api/users/{}", user.id);
    Ok(located(StatusCode::CREATED, &location, user))
}

/// Changes a user's name or email.
///
/// 400 for a bad id or malformed JSON; 409 `conflict` when the email is
/// already used; 415 for a body not declared as JSON; 422 for an invalid
/// name or email, or an unknown field.
#[utoipa::path(
    put,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    request_body = UpdateUserSchema,
    responses(
        (status = 200, description = "The user as now stored", body = UserSchema),
        BodyProblems,
        NotFound,
        Conflict,
        ServiceUnavailable,
    )
)]
async fn update_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(changes): ApiJson<UpdateUser>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let updated = state.store.update_user(id.get(), changes).await;
    // Invalidate whatever happened: a failed call may still have written.
    state.users.invalidate(&id.key()).await;
    let user = updated?.ok_or_else(|| ApiError::no_such(Entity::User, id.get()))?;
    Ok(Json(user).into_response())
}

/// Deletes a user who has no orders.
///
/// 409 `conflict` when the user has orders.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        BadRequest,
        NotFound,
        Conflict,
        ServiceUnavailable,
    )
)]
async fn delete_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = EntityId::parse(&id)?;
    let deleted = state.store.delete_user(id.get()).await;
    state.users.invalidate(&id.key()).await;
    if !deleted? {
        return Err(ApiError::no_such(Entity::User, id.get()));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
