//! The dashboard's chaos actions: `POST /api/dashboard/chaos/{action}` is
//! checked (404 `no_control` without a control API, then the
//! [`Guard`](super::guard::Guard)) and passed on to the stack's control API
//! (what `holdfast up` serves, or `--control-url`), which plays the fault.
//!
//! The control API's answer (202 with the action, 409 when one runs, 422
//! for bad parameters, all problem+json on error) is passed back as it is.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_chaos::stack_control::{ACTIONS, StackView};

use crate::problem::ApiError;
use crate::problem::responses::{
    ActionProblems, BadGateway, Conflict, NotFound, UnprocessableEntity,
};

/// How long the dashboard waits for the control API.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// The stack's control API, as the dashboard reaches it.
#[derive(Clone)]
pub struct ControlClient {
    url: String,
    token: String,
    client: reqwest::Client,
}

// Hand-written so that the token never reaches a log.
impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
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
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            // The person's token passed this dashboard; the stack refused
            // the dashboard's: a configuration error, not theirs.
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "control_refused",
                "the stack's control API refused this dashboard's token (--token differs from the stack's)",
            ));
        }
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
}

/// Plays a chaos action on the stack the dashboard controls.
///
/// 404 `no_control` (a dashboard that controls no stack) or
/// `unknown_action`; 409 `action_running`, `not_available` (the stack lacks
/// what the action acts on) or `nothing_running` (`end`); 422
/// `invalid_params`; 502 `control_unreachable`.
#[utoipa::path(
    post,
    path = "/api/dashboard/chaos/{action}",
    tag = "chaos",
    params(("action" = String, Path, description = "crash-redis, restart-redis, redis-password, slow-redis, blackhole-redis, database-down, kill-worker, or end")),
    request_body(content = Object, description = "The action's parameters, e.g. {\"down_for_s\": 45}; all optional", content_type = "application/json"),
    responses(
        (status = 202, description = "The action started: its record (id, action, label, params, started_at_unix_ms, ends_at_unix_ms)", body = Object),
        (status = 200, description = "`end`: the action that was ended", body = Object),
        ActionProblems,
        NotFound,
        Conflict,
        UnprocessableEntity,
        BadGateway,
    )
)]
pub(super) async fn chaos(
    State(shared): State<super::AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(control) = &shared.control else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_control",
            "this dashboard controls no stack (start it with --control-url and a token, or use `holdfast up`)",
        )
        .into_response();
    };
    if let Err(refused) = shared.guard.check(&headers, !body.is_empty()) {
        return refused.into_response();
    }
    if action != "end" && !ACTIONS.iter().any(|(name, _)| *name == action) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!(
                "no action is named {action:?}; the actions are {} and end",
                ACTIONS.map(|(name, _)| name).join(", ")
            ),
        )
        .into_response();
    }
    control
        .forward(&action, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
