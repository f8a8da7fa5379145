//! One error type for HTTP, rendered as `application/problem+json`.
//!
//! Every error a client sees has a stable `code`, a short `title` and a
//! `detail` for people; internals (Redis error text, panics) are logged,
//! never sent. The body is [`holdfast_core::Problem`], the workspace's one
//! problem type, so `holdfast load` and the other tools read what the roles
//! write.
//!
//! - this file: [`ApiError`] and how it is rendered, the [`ApiJson`]
//!   extractor, and the middleware that gives bare errors a body;
//! - `mapping`: how every library error a handler meets becomes an
//!   [`ApiError`] (`From` impls, so handlers use `?`), in one place, which
//!   is where to look for "which status does this failure get";
//! - [`responses`]: the same errors as reusable OpenAPI responses;
//! - `listener_doc`: what a listener adds to every operation of its
//!   OpenAPI document (the middleware stack's answers, common headers,
//!   optional authentication, the health probes).

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

pub use holdfast_core::{PROBLEM_JSON, Problem};

pub(crate) mod listener_doc;
mod mapping;
pub mod responses;

/// An HTTP error with a stable code.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with the given status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header (rounded up to whole seconds).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 409 with a code: the request contradicts the current state.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 422 with a code: well-formed, but refused.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, detail: impl Into<String>, after: Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).retry_after(after)
    }

    /// 415 `unsupported_media_type`: a body not declared as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a body must be sent with `Content-Type: application/json`",
        )
    }

    /// 500 `internal`; what went wrong belongs in the log, not in `detail`.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// 503 `shutting_down`: this instance is draining, another one may
    /// answer at once.
    pub fn shutting_down() -> Self {
        Self::unavailable(
            "shutting_down",
            "this instance is shutting down",
            Duration::from_secs(1),
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for people.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// `body`, problem details or a superset of them, as the answer with
/// `status`: JSON sent as [`PROBLEM_JSON`].
pub(crate) fn problem_response(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Problem::new(self.status.as_u16(), self.code, title, self.detail);
        let mut response = problem_response(self.status, body);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// `Json<T>` whose rejections are problem details, and whose body must be
/// a JSON object: serde would otherwise fill a struct from an array of its
/// fields in order (`["Ada", "ada@example.com"]`), which no schema of
/// ours allows. It refuses a body not declared as JSON with 415, malformed
/// JSON with 400 and JSON that does not fit with 422; a number with a zero
/// fraction (`5.0`) counts as the integer it is (see [`from_json`]).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !declares_json(req.headers()) {
            return Err(ApiError::unsupported_media_type());
        }
        let body = Bytes::from_request(req, state).await?;
        let ObjectOnly(value) = from_json(&body)?;
        Ok(ApiJson(value))
    }
}

/// Whether `headers` declare a JSON body: `application/json` or another
/// `application/*+json`, parameters aside (as axum's `Json` has it).
pub(crate) fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// `T` from a JSON body: 400 `malformed_json` when it is not JSON, 422
/// `invalid_body` when it does not fit. A number with a zero fraction
/// (`5.0`) is read as the integer it is, as JSON Schema (and so the
/// OpenAPI documents) counts it one; serde alone would refuse it where an
/// integer is expected.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let err = match serde_json::from_slice::<T>(body) {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    if !err.is_data() {
        return Err(ApiError::unreadable_json(&err));
    }
    // Only a body that did not fit is read again, so the usual case costs
    // nothing more; one that is not JSON at all (serde may stop at a value
    // that does not fit before it reaches the syntax error) is 400.
    let mut tree = serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|err| ApiError::unreadable_json(&err))?;
    if !integral_floats_as_integers(&mut tree) {
        return Err(ApiError::unreadable_json(&err));
    }
    serde_json::from_value(tree).map_err(|err| ApiError::unreadable_json(&err))
}

/// Rewrites every number of `value` that has a zero fraction and fits an
/// `i64` or `u64` as that integer; whether any was.
fn integral_floats_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(number) => {
            let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
                return false;
            };
            // 2^64 and -2^63, exactly representable; `u64::MAX as f64`
            // would round up to the first.
            let integer = if float.fract() != 0.0 || !float.is_finite() {
                None
            } else if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
                Some(serde_json::Number::from(float as u64))
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&float) {
                Some(serde_json::Number::from(float as i64))
            } else {
                None
            };
            match integer {
                Some(integer) => {
                    *number = integer;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
            integral_floats_as_integers(item) | changed
        }),
        Value::Object(fields) => fields.values_mut().fold(false, |changed, field| {
            integral_floats_as_integers(field) | changed
        }),
        _ => false,
    }
}

/// `T` read only from a JSON object.
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Object(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// Gives bare error responses (axum's 404 and 405, a timeout's empty 504)
/// a problem body, so clients see one error format everywhere.
pub async fn bare_errors_as_problems(req: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "error",
    };
    let mut problem =
        ApiError::new(status, code, status.canonical_reason().unwrap_or("error")).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        quantity: u32,
        user_id: i64,
    }

    #[test]
    fn a_number_with_a_zero_fraction_is_read_as_the_integer_it_is() {
        let order: Order = from_json(br#"{"quantity": 5.0, "user_id": -2e0}"#).unwrap();
        assert_eq!(
            order,
            Order {
                quantity: 5,
                user_id: -2
            }
        );
        for (body, status, code) in [
            (
                &br#"{"quantity": 5.5, "user_id": 1}"#[..],
                422,
                "invalid_body",
            ),
            (br#"{"quantity": 1e30, "user_id": 1}"#, 422, "invalid_body"),
            (
                br#"{"quantity": 5.0, "user_id": 1, "x": 1}"#,
                422,
                "invalid_body",
            ),
            (br#"{"quantity": 5.0,"#, 400, "malformed_json"),
        ] {
            let err = from_json::<Order>(body).unwrap_err();
            assert_eq!((err.status().as_u16(), err.code()), (status, code));
        }
    }

    #[test]
    fn json_is_declared_by_its_media_type_and_suffix() {
        let declared = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            declares_json(&headers)
        };
        assert!(declared("application/json"));
        assert!(declared("Application/JSON; charset=utf-8"));
        assert!(declared("application/merge-patch+json"));
        assert!(!declared("text/plain"));
        assert!(!declared("application/jsonx"));
        assert!(!declares_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn an_api_error_is_sent_as_problem_details_with_its_retry_after() {
        let err = ApiError::unavailable(
            "db_unavailable",
            "the database is not answering",
            Duration::from_millis(1200),
        );

        let response = err.into_response();

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "https://holdfast.invalid/problems/db_unavailable",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "the database is not answering",
                "code": "db_unavailable",
            })
        );
    }
}
