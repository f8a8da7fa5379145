//! Path ids and query parameters, parsed into bounded values so that each
//! bad one gets its own problem code.

use std::ops::RangeInclusive;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde::Deserialize;

use crate::problem::ApiError;

/// Largest page of search results or products.
pub const MAX_LIMIT: u32 = 100;

/// Page size when a request names none.
pub const DEFAULT_LIMIT: u32 = 20;

/// A row id from a path: a positive integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityId(i64);

impl EntityId {
    /// Parses a decimal id of at least 1.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id >= 1)
            .map(EntityId)
            .ok_or_else(|| ApiError::bad_request("invalid_id", "an id is a positive integer"))
    }

    /// The id.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The cache key of this id.
    pub(super) fn key(self) -> String {
        self.0.to_string()
    }
}

/// Query parameters as they arrive; the handlers parse what they use.
#[derive(Deserialize, Default)]
pub(super) struct RawQuery {
    pub(super) q: Option<String>,
    pub(super) limit: Option<String>,
    pub(super) offset: Option<String>,
}

/// The query string, or 400 `invalid_query` when it cannot be read.
pub(super) fn query(raw: Result<Query<RawQuery>, QueryRejection>) -> Result<RawQuery, ApiError> {
    raw.map(|Query(q)| q)
        .map_err(|_| ApiError::bad_request("invalid_query", "the query string cannot be read"))
}

/// The page size: `limit` from 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when
/// absent, else 400 `invalid_limit`.
pub(super) fn page_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    bounded(raw, "limit", "invalid_limit", 1..=MAX_LIMIT, DEFAULT_LIMIT)
}

/// A number in `range` from an optional parameter, `default` when absent.
pub(super) fn bounded(
    raw: Option<&str>,
    name: &str,
    code: &'static str,
    range: RangeInclusive<u32>,
    default: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                code,
                format!(
                    "`{name}` must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// The query of a user search, as documented (read as [`RawQuery`]).
pub(super) struct SearchParams;

impl utoipa::IntoParams for SearchParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::ParameterIn::Query;
        let limit = utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .build();
        vec![
            crate::problem::listener_doc::parameter(
                "q",
                Query,
                true,
                "Text to find in names and emails (literally, ignoring ASCII case): 1 to 100 characters once trimmed, no control characters",
                super::schemas::text_schema(
                    false,
                    &super::schemas::trimmed_text_pattern(1, super::users::MAX_SEARCH_CHARS),
                    "1 to 100 characters once trimmed, no control characters",
                ),
            ),
            crate::problem::listener_doc::parameter(
                "limit",
                Query,
                false,
                "Most users returned, 1 to 100 (default 20)",
                limit,
            ),
        ]
    }
}

/// The query of a page of products, as documented (read as
/// [`RawQuery`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // The document's view of `RawQuery`.
pub(super) struct PageParams {
    /// Products per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Products to skip, 0 to 1,000,000 (default 0).
    #[param(minimum = 0, maximum = 1_000_000)]
    offset: Option<u32>,
}
