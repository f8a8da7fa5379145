//! The streams view: each topic's partitions (length, lag, pending, dead
//! letters, consumers with their idle time) and the dead-letter browser:
//! list, inspect an entry's fields, replay one or all, purge. Replay and
//! purge need the token ([`Guard`](super::guard::Guard)); purge also needs
//! `{"confirm": true}`, which the page asks a person for.
//!
//! Topics shown: the worker's default topic and every topic the exporter
//! reports.

use std::time::Duration;

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};

use axum::response::{IntoResponse, Response};
use holdfast_core::Topic;
use holdfast_redis::RedisError;
use holdfast_streams::{DeadLetter, DeadLetterEntry, PartitionStats};
use serde::{Deserialize, Serialize};

use super::guard::Authorized;
use super::{AppState, html};
use crate::problem::ApiError;
use crate::problem::responses::{
    ActionProblems, BadRequest, NotFound, ServiceUnavailable, UnprocessableEntity,
};

/// Most dead letters listed per partition.
pub const MAX_LISTED: usize = 200;

/// Deadline given to replayed requests unless the request says otherwise.
pub const REPLAY_DEADLINE: Duration = Duration::from_secs(300);

/// One topic as the streams view shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TopicView {
    /// Its name.
    pub topic: String,
    /// Its partitions.
    #[schema(value_type = Vec<Object>)]
    pub partitions: Vec<PartitionStats>,
}

fn unavailable(err: &RedisError) -> ApiError {
    ApiError::unavailable(
        "redis_unavailable",
        format!("Redis did not answer: {err}"),
        Duration::from_secs(1),
    )
}

fn topic(name: &str) -> Result<Topic, ApiError> {
    Topic::parse(name)
        .map_err(|err| ApiError::bad_request("invalid_topic", format!("topic {name:?}: {err}")))
}

/// The topics shown.
fn topic_names(shared: &AppState) -> Vec<String> {
    let mut names = shared.charts.topics();
    let default = crate::worker::WorkerSettings::DEFAULT_TOPIC.to_owned();
    if !names.contains(&default) {
        names.insert(0, default);
    }
    names
}

async fn topics(shared: &AppState) -> Result<Vec<TopicView>, ApiError> {
    let mut out = Vec::new();
    for name in topic_names(shared) {
        let topic = topic(&name)?;
        let partitions = shared
            .admin
            .partition_stats(&topic)
            .await
            .map_err(|e| unavailable(&e))?;
        out.push(TopicView {
            topic: name,
            partitions,
        });
    }
    Ok(out)
}

/// Every topic with its partitions and consumers.
#[utoipa::path(
    get,
    path = "/api/dashboard/topics",
    tag = "streams",
    responses(
        (status = 200, description = "Each topic's partitions: length, lag, pending, dead_letters, consumers [{name, pending, idle_ms}]", body = [TopicView]),
        ServiceUnavailable,
    )
)]
pub(super) async fn topics_json(State(shared): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(topics(&shared).await?).into_response())
}

/// A topic's dead letters, oldest first.
#[utoipa::path(
    get,
    path = "/api/dashboard/topics/{topic}/dead-letters",
    tag = "streams",
    params(("topic" = String, Path, description = "The topic")),
    responses(
        (status = 200, description = "Up to 200 per partition: id, partition, origin_id, request_id, code, reason, deliveries", body = [Object]),
        BadRequest,
        ServiceUnavailable,
    )
)]
pub(super) async fn dead_letters_json(
    State(shared): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let letters = shared
        .admin
        .dead_letters(&topic(&name)?, MAX_LISTED)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(letters).into_response())
}

/// A stream entry id: `milliseconds-sequence`.
fn entry_id(id: &str) -> Result<&str, ApiError> {
    let valid = id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    });
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{id:?} is not a stream entry id (like 1795851867287-0)"),
        ))
    }
}

async fn one_letter(shared: &AppState, name: &str, id: &str) -> Result<DeadLetterEntry, ApiError> {
    let id = entry_id(id)?;
    shared
        .admin
        .dead_letter(&topic(name)?, id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| ApiError::not_found(format!("topic {name} has no dead letter {id}")))
}

/// One dead letter with every field of its entry.
#[utoipa::path(
    get,
    path = "/api/dashboard/topics/{topic}/dead-letters/{id}",
    tag = "streams",
    params(("topic" = String, Path, description = "The topic"), ("id" = String, Path, description = "Its id in the dead-letter stream")),
    responses(
        (status = 200, description = "{letter, fields: [[name, value], …]}", body = Object),
        BadRequest,
        NotFound,
        ServiceUnavailable,
    )
)]
pub(super) async fn dead_letter_json(
    State(shared): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(one_letter(&shared, &name, &id).await?).into_response())
}

/// What a replay takes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Dead-letter ids to replay; empty or absent replays all.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Deadline of the replayed requests, seconds from now (default 300).
    pub deadline_s: Option<u64>,
}

/// What a purge takes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Must be `true`: a purge cannot be undone.
    #[serde(default)]
    pub confirm: bool,
}

/// Puts dead letters back on their request streams.
#[utoipa::path(
    post,
    path = "/api/dashboard/topics/{topic}/dead-letters/replay",
    tag = "streams",
    params(("topic" = String, Path, description = "The topic")),
    request_body(content = ReplayRequest, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "{\"replayed\": n}", body = Object),
        ActionProblems,
        UnprocessableEntity,
        ServiceUnavailable,
    )
)]
pub(super) async fn replay(
    State(shared): State<AppState>,
    Path(name): Path<String>,
    Authorized(request): Authorized<ReplayRequest>,
) -> Result<Response, ApiError> {
    let topic = topic(&name)?;
    for id in &request.ids {
        entry_id(id)?;
    }
    let deadline = request
        .deadline_s
        .map_or(REPLAY_DEADLINE, Duration::from_secs)
        .min(Duration::from_secs(86_400));
    let replayed = shared
        .admin
        .replay(&topic, &request.ids, deadline)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::info!(topic = %name, replayed, "dead letters replayed from the dashboard");
    Ok(Json(serde_json::json!({ "replayed": replayed })).into_response())
}

/// Deletes every dead letter of a topic.
///
/// 422 `confirm_required` without `{"confirm": true}`, `invalid_body` for
/// anything else.
#[utoipa::path(
    post,
    path = "/api/dashboard/topics/{topic}/dead-letters/purge",
    tag = "streams",
    params(("topic" = String, Path, description = "The topic")),
    request_body(content = PurgeRequest, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "{\"purged\": n}", body = Object),
        ActionProblems,
        UnprocessableEntity,
        ServiceUnavailable,
    )
)]
pub(super) async fn purge(
    State(shared): State<AppState>,
    Path(name): Path<String>,
    Authorized(request): Authorized<PurgeRequest>,
) -> Result<Response, ApiError> {
    if !request.confirm {
        return Err(ApiError::unprocessable(
            "confirm_required",
            "a purge deletes every dead letter of the topic for good: send {\"confirm\": true}",
        ));
    }
    let topic = topic(&name)?;
    let purged = shared
        .admin
        .purge(&topic)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::warn!(topic = %name, purged, "dead letters purged from the dashboard");
    Ok(Json(serde_json::json!({ "purged": purged })).into_response())
}

/// A topic with its dead letters, for the page.
struct TopicSection {
    view: TopicView,
    letters: Vec<DeadLetter>,
}

/// The streams page.
#[derive(Template)]
#[template(path = "streams.html")]
struct StreamsPage {
    nav: &'static str,
    can_act: bool,
    error: Option<String>,
    topics: Vec<TopicSection>,
}

pub(super) async fn page(State(shared): State<AppState>) -> Response {
    let mut sections = Vec::new();
    let error = match topics(&shared).await {
        Ok(views) => {
            for view in views {
                let letters = match Topic::parse(&view.topic) {
                    Ok(t) => shared
                        .admin
                        .dead_letters(&t, MAX_LISTED)
                        .await
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                sections.push(TopicSection { view, letters });
            }
            None
        }
        Err(err) => Some(err.detail().to_owned()),
    };
    html(&StreamsPage {
        nav: "streams",
        can_act: shared.guard.has_token(),
        error,
        topics: sections,
    })
}

/// One dead letter's page.
#[derive(Template)]
#[template(path = "dead_letter.html")]
struct DeadLetterPage {
    nav: &'static str,
    can_act: bool,
    topic: String,
    entry: DeadLetterEntry,
}

pub(super) async fn letter_page(
    State(shared): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    match one_letter(&shared, &name, &id).await {
        Ok(entry) => html(&DeadLetterPage {
            nav: "streams",
            can_act: shared.guard.has_token(),
            topic: name,
            entry,
        }),
        Err(err) => err.into_response(),
    }
}
