//! Problem details (RFC 9457): the one error body every holdfast HTTP
//! listener sends, with the media type that goes with it.
//!
//! It is part of the wire contract: clients (and `holdfast load`, which
//! counts problem answers as explained failures) read `code` to tell one
//! failure from another, so the fields and the `type` URI are stable.

use serde::{Deserialize, Serialize};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type` URI; the code follows it.
pub const PROBLEM_TYPE_BASE: &str = "https://holdfast.invalid/problems/";

/// Problem details as sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the kind of problem: `https://holdfast.invalid/problems/`
    /// followed by the code.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

impl Problem {
    /// A problem with its `type` URI made from `code`.
    pub fn new(
        status: u16,
        code: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: title.into(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
        }
    }

    /// Whether a `Content-Type` value names problem details (parameters
    /// such as `; charset=utf-8` allowed, case ignored).
    pub fn is_media_type(content_type: &[u8]) -> bool {
        content_type
            .get(..PROBLEM_JSON.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(PROBLEM_JSON.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_serializes_with_its_type_uri_and_code() {
        let problem = Problem::new(404, "not_found", "Not Found", "no user 7");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "https://holdfast.invalid/problems/not_found");
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["status"], 404);
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, problem);
    }

    #[test]
    fn the_media_type_is_recognised_with_parameters_and_any_case() {
        assert!(Problem::is_media_type(b"application/problem+json"));
        assert!(Problem::is_media_type(
            b"Application/Problem+JSON; charset=utf-8"
        ));
        assert!(!Problem::is_media_type(b"application/json"));
        assert!(!Problem::is_media_type(b"application/prob"));
    }
}
