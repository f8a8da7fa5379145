//! What tests ask of an HTTP answer: its JSON or text body, a problem
//! details body checked against the expected status and code, and the
//! headers the roles set (`X-Cache`, `Retry-After`).
//!
//! Every helper panics on a transport error: a role that does not answer
//! at all fails the test right there, with what was asked.

use serde_json::Value;

/// The media type of every error answer of the roles and the chaos API.
pub use holdfast_core::PROBLEM_JSON;

/// `GET url`.
///
/// # Panics
/// If the request cannot be sent or gets no answer.
pub async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url} sent: {error}"))
}

/// The JSON body of `GET url`, whatever its status.
///
/// # Panics
/// If there is no answer or its body is not JSON; the message shows the
/// body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let body = get_text(client, url).await;
    serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("GET {url} answers JSON: {error}; body: {body}"))
}

/// The body of `GET url` as text, whatever its status.
///
/// # Panics
/// If there is no answer or its body cannot be read.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    get(client, url)
        .await
        .text()
        .await
        .unwrap_or_else(|error| panic!("GET {url} answers text: {error}"))
}

/// `body` sent as `application/json` with `method` to `url`.
///
/// # Panics
/// If the request cannot be sent or gets no answer.
pub async fn send_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &str,
) -> reqwest::Response {
    client
        .request(method.clone(), url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {url} sent: {error}"))
}

/// Checks that `resp` is problem details with `status` and `code` (in the
/// status line, the content type and the body) and returns the body for
/// further checks.
///
/// # Panics
/// When any of those differ; the message shows the path and the body.
pub async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let path = resp.url().path().to_owned();
    assert_eq!(resp.status().as_u16(), status, "{path:?}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(PROBLEM_JSON),
        "{path:?}"
    );
    let body: Value = resp.json().await.expect("a problem details body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    body
}

/// The `X-Cache` header of a response (`HIT`, `MISS`, `STALE`, `BYPASS`),
/// or an empty string.
pub fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The `Retry-After` header of a response, in seconds.
pub fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
