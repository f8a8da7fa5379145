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
