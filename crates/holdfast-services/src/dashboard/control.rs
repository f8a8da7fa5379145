//! The dashboard's chaos actions: `POST /api/dashboard/chaos/{action}` is
//! checked here and passed on to the stack's control API (what `holdfast
//! up` serves, or `--control-url`), which plays the fault.
//!
//! Safety, in the order it is checked:
//! 1. Without a control API the dashboard is read-only: 404 `no_control`.
//! 2. The request must carry the token as `Authorization: Bearer TOKEN`:
//!    401 `unauthorized` otherwise. A browser never adds that header to a
//!    request another site makes it send (that would need a CORS preflight,
//!    which the dashboard does not allow), so the header is the CSRF guard;
//!    no cookie is ever used.
//! 3. When the browser sends an `Origin`, it must be this dashboard's own
//!    (`http://` + the `Host` asked for): 403 `cross_origin` otherwise.
//! 4. The body, if any, must be JSON (415 otherwise), so a plain HTML form
//!    elsewhere cannot post one.
//!
//! The control API's answer (202 with the action, 409 when one runs, 422
//! for bad parameters, all problem+json on error) is passed back as it is.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_chaos::stack_control::{StackView, constant_time_eq};

use crate::problem::ApiError;

/// How long the dashboard waits for the control API.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// The stack's control API, as the dashboard reaches it.
#[derive(Clone, Debug)]
pub struct ControlClient {
    url: String,
    token: String,
    client: reqwest::Client,
}

impl ControlClient {
    /// The control API at `url` (`http://127.0.0.1:PORT`), with `token`.
    pub fn new(url: &str, token: String) -> Result<Self, reqwest::Error> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::builder()
                .timeout(CONTROL_TIMEOUT)
                .build()?,
        })
    }

    /// The stack as the control API shows it; why not, when it does not.
    pub async fn stack(&self) -> Result<StackView, String> {
        let response = self
            .client
            .get(format!("{}/stack", self.url))
            .bearer_auth(&self.token)
            .timeout(super::HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|err| format!("the control API did not answer: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("the control API answered {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|err| format!("the control API's answer was not understood: {err}"))
    }

    /// Passes an action on; the control API's answer.
    async fn forward(&self, action: &str, body: Bytes) -> Result<Response, ApiError> {
        let body = if body.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            body
        };
        let answer = self
            .client
            .post(format!("{}/stack/chaos/{action}", self.url))
            .bearer_auth(&self.token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "control_unreachable",
                    format!("the stack's control API did not answer: {err}"),
                )
            })?;
        let status =
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let bytes = answer.bytes().await.map_err(|err| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "control_unreachable",
                format!("the stack's control API's answer was cut: {err}"),
            )
        })?;
        Ok((status, [(header::CONTENT_TYPE, content_type)], bytes).into_response())
    }

    fn token_matches(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), self.token.as_bytes())
    }
}

/// Whether a browser's `Origin`, when sent, is the dashboard's own.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// `POST /api/dashboard/chaos/{action}`.
pub(super) async fn chaos(
    State(control): State<Option<Arc<ControlClient>>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(control) = control else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_control",
            "this dashboard controls no stack: it is read-only (start it with --control-url and a token, or use `holdfast up`)",
        ));
    };
    if !control.token_matches(&headers) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "chaos actions need the stack's control token as `Authorization: Bearer TOKEN`",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Ok(response);
    }
    if !same_origin(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "chaos actions are taken only from the dashboard's own pages",
        ));
    }
    if !body.is_empty() && !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the parameters of an action are a JSON object (content-type: application/json)",
        ));
    }
    control.forward(&action, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_the_dashboards_own_origin_passes() {
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:8000")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "127.0.0.1:8000"),
            (header::ORIGIN, "http://127.0.0.1:8000"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:8000"),
            (header::ORIGIN, "http://evil.example"),
        ])));
    }

    #[test]
    fn parameters_must_be_json() {
        assert!(is_json(&headers(&[(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded"
        )])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
