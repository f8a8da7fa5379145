//! Who may change something through the dashboard: chaos actions,
//! dead-letter replay and purge, loop tests. Reading needs nothing.
//!
//! In the order it is checked:
//! 1. A dashboard started without a token takes no action: 403
//!    `read_only`.
//! 2. The request must carry the token as `Authorization: Bearer TOKEN`:
//!    401 `unauthorized` otherwise. A browser never adds that header to a
//!    request another site makes it send (that needs a CORS preflight, which
//!    the dashboard never allows), so the header is also the CSRF guard; no
//!    cookie is ever used.
//! 3. When the browser sends an `Origin`, it must be this dashboard's own
//!    (`http://` or `https://` + the `Host` asked for): 403 `cross_origin`.
//! 4. A body, if any, must be JSON (415 otherwise), so a plain HTML form on
//!    another site cannot post one.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_chaos::stack_control::{bearer_token, constant_time_eq};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::problem::ApiError;

/// The parameters of an action that passed the guard: the body read as
/// JSON (`T::default()` when there is none). A refusal is answered before
/// the body is looked at; an unreadable body is 422 `invalid_body`.
#[derive(Debug)]
pub struct Authorized<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for Authorized<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        // The guard first, from the headers alone: a refused request's body
        // is never read.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        state.guard.check(req.headers(), announced)?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if body.is_empty() {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&body).map(Self).map_err(|err| {
            ApiError::unprocessable(
                "invalid_body",
                format!("the body is not what this action takes: {err}"),
            )
            .into_response()
        })
    }
}

/// The token mutating requests need, if the dashboard has one.
#[derive(Clone, Default)]
pub struct Guard {
    token: Option<String>,
}

// Hand-written so that the token never reaches a log.
impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

impl Guard {
    /// A guard for `token` (`None`: read-only).
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    /// Whether the dashboard can take actions at all.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Lets a mutating request through, or says why not.
    ///
    /// # Errors
    /// Why the request is refused, to be answered as problem+json.
    pub fn check(&self, headers: &HeaderMap, has_body: bool) -> Result<(), Refused> {
        let Some(token) = &self.token else {
            return Err(Refused::from(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only",
                "this dashboard was started without a token: it shows, it takes no action",
            )));
        };
        if !constant_time_eq(bearer_token(headers).as_bytes(), token.as_bytes()) {
            return Err(Refused(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this action needs the dashboard's token as `Authorization: Bearer TOKEN`",
            )));
        }
        if !same_origin(headers) {
            return Err(Refused(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "actions are taken only from the dashboard's own pages",
            )));
        }
        if has_body && !is_json(headers) {
            return Err(Refused(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the parameters of an action are a JSON object (content-type: application/json)",
            )));
        }
        Ok(())
    }
}

/// A refused action; a 401 also says `WWW-Authenticate: Bearer`.
#[derive(Debug)]
pub struct Refused(ApiError);

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused(error)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let unauthorized = self.0.status() == StatusCode::UNAUTHORIZED;
        let mut response = self.0.into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<Refused> for Response {
    fn from(refused: Refused) -> Self {
        refused.into_response()
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
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest == host)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
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

    fn status(result: Result<(), Refused>) -> Option<StatusCode> {
        result.err().map(|r| r.into_response().status())
    }

    #[test]
    fn actions_need_the_token_the_own_origin_and_json() {
        let guard = Guard::new(Some("s3cret".into()));
        let host = (header::HOST, "127.0.0.1:8000");
        let auth = (header::AUTHORIZATION, "Bearer s3cret");
        let json = (header::CONTENT_TYPE, "application/json; charset=utf-8");
        assert_eq!(
            status(guard.check(&headers(&[host.clone(), auth.clone(), json.clone()]), true)),
            None
        );
        assert_eq!(
            status(guard.check(&headers(&[host.clone(), json.clone()]), true)),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(guard.check(
                &headers(&[
                    host.clone(),
                    (header::AUTHORIZATION, "Bearer s3cre"),
                    json.clone()
                ]),
                true
            )),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(guard.check(
                &headers(&[
                    host.clone(),
                    auth.clone(),
                    json.clone(),
                    (header::ORIGIN, "http://evil.example")
                ]),
                true
            )),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(guard.check(
                &headers(&[
                    host.clone(),
                    auth.clone(),
                    json,
                    (header::ORIGIN, "http://127.0.0.1:8000")
                ]),
                true
            )),
            None
        );
        assert_eq!(
            status(guard.check(
                &headers(&[
                    host.clone(),
                    auth.clone(),
                    (header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                ]),
                true
            )),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(status(guard.check(&headers(&[host, auth]), false)), None);
        assert_eq!(
            status(Guard::new(None).check(&HeaderMap::new(), false)),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
