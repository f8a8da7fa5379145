//! How the failures handlers meet become HTTP errors, in one place.
//!
//! Handlers use `?`; the status and code of each failure are decided here
//! and nowhere else. Only texts written for clients go into `detail`;
//! whatever a driver or Redis said goes to the log.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use holdfast_cache::CacheError;
use holdfast_store::{Entity, StoreError};
use holdfast_streams::CallError;

use super::ApiError;
use crate::api::UsersFailure;
use crate::weather::InvalidWeatherRequest;

/// `Retry-After` of a failure that names no better moment: soon, since
/// these outages (Redis reconnecting, a database restarting) are short.
const RETRY_SOON: Duration = Duration::from_secs(1);

/// A store failure: 404, 409, 422, 503 while the database is not
/// answering, 500 for anything else.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let Some(after) = err.retry_after() {
            tracing::warn!(error = %err, "database unavailable");
            return ApiError::unavailable(err.code(), "the database is not answering", after);
        }
        match err {
            StoreError::NotFound { entity, id } => ApiError::no_such(entity, id),
            StoreError::Conflict { reason } => ApiError::conflict("conflict", reason),
            StoreError::Invalid { reason } => {
                tracing::info!(%reason, "database refused a value");
                ApiError::unprocessable("invalid", "the database refused a value of this request")
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::internal("internal error")
            }
        }
    }
}

/// A read through the cache with neither the database nor a stale copy to
/// answer: 503 when the loader may succeed later, 500 otherwise.
impl From<CacheError> for ApiError {
    fn from(err: CacheError) -> Self {
        if err.is_retryable() {
            ApiError::unavailable(
                "db_unavailable",
                "the database is not answering and no cached copy is available",
                RETRY_SOON,
            )
        } else {
            ApiError::internal("internal error")
        }
    }
}

/// A stream call or job that could not be queued or got no reply.
impl From<CallError> for ApiError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Backlog { backlog, limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "backlog_full",
                format!(
                    "the topic has {backlog} requests waiting (limit {limit}); try again later"
                ),
            )
            .retry_after(RETRY_SOON),
            CallError::Redis(e) if e.is_permission_denied() => ApiError::redis_refused(&e),
            CallError::Redis(e) => {
                tracing::warn!(error = %e, "call failed: redis");
                ApiError::unavailable(
                    "redis_unavailable",
                    "the request could not be queued because Redis is unavailable",
                    e.retry_after().unwrap_or(RETRY_SOON),
                )
            }
            CallError::DeadlineExceeded => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                "no reply before the deadline",
            ),
            CallError::Overloaded(refusal) => ApiError::unavailable(
                "overloaded",
                format!(
                    "the request would wait about {} ms for a worker, and at most {} ms of waiting is allowed (its deadline leaves {} ms); nothing was queued",
                    refusal
                        .wait
                        .min(std::time::Duration::from_secs(86_400))
                        .as_millis(),
                    refusal.allowed.as_millis(),
                    refusal.remaining.as_millis()
                ),
                refusal.retry_after,
            ),
            CallError::ShuttingDown => ApiError::shutting_down(),
            CallError::Durability(why) => ApiError::unprocessable("durability_unavailable", why),
        }
    }
}

impl ApiError {
    /// 503 `redis_refused`: Redis refused a command for this service's
    /// user (its ACL). No `Retry-After`: retrying does not help until the
    /// rules change. The detail carries Redis's own words, which name the
    /// command (or the script) it refused.
    pub(crate) fn redis_refused(err: &holdfast_redis::RedisError) -> Self {
        tracing::error!(error = %err, "redis refused a command: check this user's ACL");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_refused",
            format!(
                "Redis refused a command this service needs (check the user's ACL rules): {err}"
            ),
        )
    }

    /// 404 `not_found`: no `entity` with `id`, as every read by id says it.
    pub(crate) fn no_such(entity: Entity, id: i64) -> Self {
        ApiError::not_found(format!("{entity} {id} not found"))
    }

    /// A job's status that could not be read: as `From<CallError>`, with
    /// a detail that speaks of reading rather than queueing.
    pub(crate) fn job_unreadable(err: CallError) -> Self {
        match err {
            CallError::Redis(e) if e.is_permission_denied() => ApiError::redis_refused(&e),
            CallError::Redis(e) => ApiError::unavailable(
                "redis_unavailable",
                "the job's status cannot be read because Redis is unavailable",
                e.retry_after().unwrap_or(RETRY_SOON),
            ),
            other => other.into(),
        }
    }

    /// A body read as bytes that is not the JSON expected: 400
    /// `malformed_json` when it is not JSON at all, 422 `invalid_body`
    /// when it does not fit.
    pub(crate) fn unreadable_json(err: &serde_json::Error) -> Self {
        if err.is_data() {
            ApiError::unprocessable("invalid_body", format!("the body does not fit: {err}"))
        } else {
            ApiError::bad_request("malformed_json", format!("the body is not JSON: {err}"))
        }
    }
}

/// A JSON body axum refused; see [`super::ApiJson`].
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            _ => (rejection.status(), "bad_body"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// A body that could not be read at all (too large, cut short).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// A weather request that is well-formed JSON but not a valid request.
impl From<InvalidWeatherRequest> for ApiError {
    fn from(err: InvalidWeatherRequest) -> Self {
        ApiError::unprocessable("invalid_body", err.to_string())
    }
}

/// A users lookup of the order service that gave no answer.
impl From<UsersFailure> for ApiError {
    fn from(failure: UsersFailure) -> Self {
        match failure {
            UsersFailure::Open(open) => ApiError::unavailable(
                "users_unavailable",
                "the users service is unavailable (circuit open)",
                open.retry_after,
            ),
            UsersFailure::Transient(reason) => {
                tracing::warn!(reason, "users service unavailable");
                ApiError::unavailable(
                    "users_unavailable",
                    "the users service did not answer in time",
                    RETRY_SOON,
                )
            }
            UsersFailure::Unexpected(status) => {
                tracing::warn!(status, "users service answered unexpectedly");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "users_bad_response",
                    "the users service gave an unexpected answer",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_and_code(err: impl Into<ApiError>) -> (u16, &'static str) {
        let err = err.into();
        (err.status().as_u16(), err.code())
    }

    #[test]
    fn store_failures_keep_their_status_and_code() {
        let reason = || "details for the log".to_owned();
        let cases = [
            (
                StoreError::Unavailable { reason: reason() },
                (503, "db_unavailable"),
            ),
            (
                StoreError::Timeout { reason: reason() },
                (503, "db_timeout"),
            ),
            (
                StoreError::NotFound {
                    entity: Entity::User,
                    id: 7,
                },
                (404, "not_found"),
            ),
            (StoreError::Conflict { reason: reason() }, (409, "conflict")),
            (StoreError::Invalid { reason: reason() }, (422, "invalid")),
            (StoreError::Internal { reason: reason() }, (500, "internal")),
        ];
        for (err, expected) in cases {
            assert_eq!(status_and_code(err), expected);
        }
    }

    #[test]
    fn call_failures_keep_their_status_and_code() {
        let backlog = CallError::Backlog {
            backlog: 11,
            limit: 10,
        };
        assert_eq!(status_and_code(backlog), (429, "backlog_full"));
        assert_eq!(
            status_and_code(CallError::DeadlineExceeded),
            (504, "deadline_exceeded")
        );
        assert_eq!(
            status_and_code(CallError::ShuttingDown),
            (503, "shutting_down")
        );
    }

    #[test]
    fn a_users_lookup_that_fails_is_503_or_502() {
        assert_eq!(
            status_and_code(UsersFailure::Transient("users_timeout")),
            (503, "users_unavailable")
        );
        assert_eq!(
            status_and_code(UsersFailure::Unexpected(418)),
            (502, "users_bad_response")
        );
    }
}
