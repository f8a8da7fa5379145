//! The problem answers of an operation as reusable OpenAPI responses.
//!
//! An operation lists the statuses it can fail with by name
//! (`responses((status = 200, …), BadRequest, NotFound, ServiceUnavailable)`)
//! instead of repeating the body, media type and headers of each. Every one
//! is a [`Problem`] sent as [`PROBLEM_JSON`]; 429 and 503 also state their
//! `Retry-After`. What is particular to one operation (which codes it
//! sends) belongs in that operation's own description.
//!
//! A document that uses these must list [`Problem`] among its schemas.
//! What the shared middleware stack answers on every operation (408, 413,
//! 429, 503, 504, ...) is added to a whole document by
//! [`super::listener_doc`], not listed by each operation.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use super::{PROBLEM_JSON, Problem};

/// A problem details answer with HTTP status `STATUS`; use the aliases
/// below.
pub struct ProblemResponse<const STATUS: u16>;

/// 400: the request cannot be read (bad id, query, header or JSON).
pub type BadRequest = ProblemResponse<400>;
/// 401: no or a wrong token; with `WWW-Authenticate: Bearer`.
pub type Unauthorized = ProblemResponse<401>;
/// 403: refused whoever asks (a read-only dashboard, another site's page).
pub type Forbidden = ProblemResponse<403>;
/// 408: the body did not arrive whole in time.
pub type RequestTimeout = ProblemResponse<408>;
/// 404: no such thing.
pub type NotFound = ProblemResponse<404>;
/// 409: the request contradicts what is stored.
pub type Conflict = ProblemResponse<409>;
/// 413: the body is over the listener's limit.
pub type PayloadTooLarge = ProblemResponse<413>;
/// 415: the body is not JSON.
pub type UnsupportedMediaType = ProblemResponse<415>;
/// 422: well-formed, but refused.
pub type UnprocessableEntity = ProblemResponse<422>;
/// 429: too much is waiting; with `Retry-After`.
pub type TooManyRequests = ProblemResponse<429>;
/// 500: an unexpected failure, whose details are only in the log.
pub type InternalServerError = ProblemResponse<500>;
/// 502: something behind this service answered unusably.
pub type BadGateway = ProblemResponse<502>;
/// 503: a dependency is unavailable, or this instance is overloaded or
/// shutting down; with `Retry-After`.
pub type ServiceUnavailable = ProblemResponse<503>;
/// 504: no answer before the deadline.
pub type GatewayTimeout = ProblemResponse<504>;

/// Three problem answers documented together, for the sets many
/// operations share; use the aliases below.
pub struct ProblemGroup<A, B, C>(std::marker::PhantomData<(A, B, C)>);

/// What an operation that reads a JSON body can be refused with: 400
/// (syntax), 415 (not declared as JSON) and 422 (content). The body's size
/// and time (413, 408) are the listener's, added to every operation.
pub type BodyProblems = ProblemGroup<BadRequest, UnsupportedMediaType, UnprocessableEntity>;

/// What a read of one resource by id can fail with: 400 (a bad id), 404
/// and 503 (its source of truth unavailable).
pub type ByIdProblems = ProblemGroup<BadRequest, NotFound, ServiceUnavailable>;

/// What a dashboard action can be refused with before it is looked at:
/// 401 (no or a wrong token), 403 (read-only, or another site's page) and
/// 415 (a body that is not JSON).
pub type ActionProblems = ProblemGroup<Unauthorized, Forbidden, UnsupportedMediaType>;

impl<A: IntoResponses, B: IntoResponses, C: IntoResponses> IntoResponses for ProblemGroup<A, B, C> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = A::responses();
        responses.extend(B::responses());
        responses.extend(C::responses());
        responses
    }
}

impl<const STATUS: u16> ProblemResponse<STATUS> {
    /// What the status means in holdfast's services, for the document.
    fn description() -> &'static str {
        match STATUS {
            400 => "The request cannot be read: a bad id, query, header or JSON syntax",
            401 => {
                "No credentials, or wrong ones (`unauthorized`); the `WWW-Authenticate` header says which scheme to use"
            }
            403 => {
                "Refused whoever asks: a read-only dashboard (`read_only`) or another site's page (`cross_origin`)"
            }
            404 => "No such resource (`not_found`)",
            408 => "The body did not arrive whole in time (`body_timeout`)",
            409 => "The request contradicts what is stored; nothing changed",
            413 => "The body is larger than the listener accepts (`body_too_large`)",
            415 => "The body is not declared as JSON (`unsupported_media_type`)",
            422 => {
                "Well-formed, but refused: an invalid or unknown field, or a reference to something unknown"
            }
            429 => {
                "Too many requests: this client's rate limit (`rate_limited`) or, on the ingress, the topic's backlog (`backlog_full`); try again after `Retry-After`"
            }
            500 => "An unexpected failure (`internal`); the details are only in the service's log",
            502 => "Something behind this service answered unusably",
            503 => {
                "A dependency is unavailable, or this instance is overloaded (`overloaded`), has as many connections open as it takes (`too_many_connections`) or is shutting down (`shutting_down`); try again after `Retry-After`"
            }
            504 => "No answer before the deadline",
            _ => "Problem details",
        }
    }

    /// Whether the answer carries `Retry-After`.
    fn retries_after() -> bool {
        matches!(STATUS, 429 | 503)
    }
}

impl<const STATUS: u16> IntoResponses for ProblemResponse<STATUS> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut response = documented_problem(Self::description(), Self::retries_after());
        if STATUS == 429 {
            // Every 429 says when to come back; a 503 may not (a Redis that
            // refuses a command for its ACL will not change its mind).
            response.headers.insert(
                "Retry-After".to_owned(),
                RefOr::T(super::listener_doc::required(retry_after_header())),
            );
        }
        BTreeMap::from([(STATUS.to_string(), response.into())])
    }
}

/// A problem details answer described by `description`, with a
/// `Retry-After` header when `retry_after`.
pub(crate) fn documented_problem(description: &str, retry_after: bool) -> Response {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(Problem::name())))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, body);
    if retry_after {
        response = response.header("Retry-After", retry_after_header());
    }
    response.build()
}

/// `Retry-After`: whole seconds, at least 1.
pub(crate) fn retry_after_header() -> Header {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    HeaderBuilder::new()
        .schema(Some(seconds))
        .description(Some("Seconds to wait before trying again"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_documents_each_of_its_statuses() {
        let body: Vec<String> = BodyProblems::responses().into_keys().collect();
        assert_eq!(body, ["400", "415", "422"]);
        let by_id: Vec<String> = ByIdProblems::responses().into_keys().collect();
        assert_eq!(by_id, ["400", "404", "503"]);
    }

    #[test]
    fn each_response_documents_its_status_body_and_retry_after() {
        let unavailable = ServiceUnavailable::responses();
        let not_found = NotFound::responses();

        let RefOr::T(unavailable) = &unavailable["503"] else {
            panic!("503 is inline");
        };
        let RefOr::T(not_found) = &not_found["404"] else {
            panic!("404 is inline");
        };
        assert!(unavailable.content.contains_key(PROBLEM_JSON));
        assert!(unavailable.headers.contains_key("Retry-After"));
        assert!(not_found.content.contains_key(PROBLEM_JSON));
        assert!(not_found.headers.is_empty());
    }
}
