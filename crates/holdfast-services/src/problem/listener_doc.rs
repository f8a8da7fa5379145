//! What a listener adds to the OpenAPI document of its routes: the answers
//! of the shared middleware stack (see `crate::http`), which any operation
//! can get whatever its handler does, the headers every request and answer
//! may carry, the optional authentication, and the health probes.
//!
//! A role builds its document from its handlers' annotations and passes it
//! through [`public`] (a public listener) or [`admin`] (an admin listener)
//! before serving it, so a status the listener can answer is never missing
//! from an operation and never listed by hand. The handlers' annotations
//! list only what the handler itself answers; where both name a status
//! (a 503 of the handler's, the stack's `overloaded`), the handler's
//! description is kept and the stack's media types and headers are added
//! to it.

use std::collections::btree_map::Entry;

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi, Ref, RefOr, Required};

use super::responses::{documented_problem, retry_after_header};
use crate::http::StackConfig;

/// The security scheme of `Authorization: Bearer <API key or JWT>`.
pub const BEARER_SCHEME: &str = "bearer";
/// The security scheme of `X-API-Key: <key>`.
pub const API_KEY_SCHEME: &str = "apiKey";

/// The request and answer header carrying the request's id.
const REQUEST_ID: &str = "x-request-id";

/// What the info description says of authentication.
const AUTHENTICATION_NOTE: &str = "Authentication is off unless configured. When it is on, every operation except the health probes (`/health*`, and `/metrics`, `/swagger*` and `/api-docs*`, which are not operations here) needs `Authorization: Bearer <API key or JWT>` or `X-API-Key: <key>`; without valid credentials the answer is 401 `unauthorized` with a `WWW-Authenticate: Bearer` header. The operations therefore list no credentials as one way to be called.";

/// `doc` as a public listener with the limits of `stack` serves it: the
/// health probes added, and every operation given the stack's answers,
/// headers and optional authentication.
pub(crate) fn public(mut doc: OpenApi, stack: &StackConfig) -> OpenApi {
    doc.merge(crate::health::probes_document());
    let rate_limited = stack.rate_limit.is_some();
    for (path, item) in &mut doc.paths.paths {
        // The same paths the rate limit and authentication leave alone.
        let probe = path.starts_with("/health");
        for operation in operations(item) {
            add_request_headers(operation);
            add_stack_answers(operation, stack);
            if !probe {
                add_authentication(operation);
                if rate_limited {
                    add_rate_limit(operation);
                }
            }
            add_to_every_answer(operation, REQUEST_ID);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    // The headers every answer may carry, once, referred to from each.
    components
        .headers
        .insert(REQUEST_ID.to_owned(), RefOr::T(request_id_header()));
    if rate_limited {
        for (name, header) in rate_limit_headers() {
            components.headers.insert(name.to_owned(), RefOr::T(header));
        }
    }
    components.security_schemes.insert(
        BEARER_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("API key or JWT")
                .description(Some(
                    "`Authorization: Bearer <credential>`: an API key, or a JWT (HS256 or RS256) with `sub` and `exp`",
                ))
                .build(),
        )),
    );
    let mut api_key = ApiKeyValue::new("X-API-Key");
    api_key.description = Some("`X-API-Key: <key>`: an API key".to_owned());
    components.security_schemes.insert(
        API_KEY_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::ApiKey(ApiKey::Header(api_key))),
    );
    let description = doc.info.description.get_or_insert_with(String::new);
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&listener_note(stack));
    description.push_str("\n\n");
    description.push_str(AUTHENTICATION_NOTE);
    doc
}

/// `doc` as an admin listener serves it: no middleware stack (no rate
/// limit, body or time limits), only the cap on open connections.
pub(crate) fn admin(mut doc: OpenApi) -> OpenApi {
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            add_answer(
                operation,
                503,
                documented_problem(
                    "This listener has as many connections open as it takes (`too_many_connections`); the connection is closed after this answer",
                    true,
                ),
            );
        }
    }
    doc
}

/// What the listener itself may answer, for the info description.
fn listener_note(stack: &StackConfig) -> String {
    let rate = match &stack.rate_limit {
        Some(limit) => format!(
            " Each client may make {} requests a second per route group, in bursts of up to {} (429 `rate_limited` beyond it); answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.",
            limit.per_second, limit.burst
        ),
        None => String::new(),
    };
    format!(
        "Every operation may also be answered by the listener itself: 408 `body_timeout` (a body not whole within {}), 413 `body_too_large` (over {} bytes), 503 `overloaded` (over {} requests in flight) or `too_many_connections` (over {} connections), 504 `timeout` (no answer within {}), 500 `internal`.{rate}",
        holdfast_core::format_duration(stack.body_timeout),
        stack.body_limit,
        stack.max_in_flight,
        stack.max_connections,
        holdfast_core::format_duration(stack.timeout),
    )
}

/// The operations of a path, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Whether `operation` takes a JSON body.
fn takes_json(operation: &Operation) -> bool {
    matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"))
}

/// Adds `answer` as the answer with `status`, or, when the operation
/// already documents that status, adds the media types and headers it
/// lacks.
fn add_answer(operation: &mut Operation, status: u16, answer: Response) {
    match operation.responses.responses.entry(status.to_string()) {
        Entry::Vacant(entry) => {
            entry.insert(RefOr::T(answer));
        }
        Entry::Occupied(entry) => {
            if let RefOr::T(existing) = entry.into_mut() {
                for (media_type, content) in answer.content {
                    existing.content.entry(media_type).or_insert(content);
                }
                for (name, header) in answer.headers {
                    existing.headers.entry(name).or_insert(header);
                }
            }
        }
    }
}

/// Adds the header `name`, one of the document's components, to every
/// answer of `operation` that lacks it.
fn add_to_every_answer(operation: &mut Operation, name: &str) {
    for answer in operation.responses.responses.values_mut() {
        if let RefOr::T(answer) = answer {
            answer
                .headers
                .entry(name.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}

/// The stack's own answers (see `crate::http`): body time and size, JSON
/// media type, panics, load shedding and the connection cap, the time
/// limit.
fn add_stack_answers(operation: &mut Operation, stack: &StackConfig) {
    add_answer(
        operation,
        408,
        documented_problem(
            &format!(
                "The body did not arrive whole within {} (`body_timeout`)",
                holdfast_core::format_duration(stack.body_timeout)
            ),
            false,
        ),
    );
    add_answer(
        operation,
        413,
        documented_problem(
            &format!(
                "The body, declared or sent, is over the {} bytes this listener takes (`body_too_large`)",
                stack.body_limit
            ),
            false,
        ),
    );
    if takes_json(operation) {
        add_answer(
            operation,
            415,
            documented_problem(
                "A body not declared as JSON: `Content-Type` must be `application/json` (`unsupported_media_type`)",
                false,
            ),
        );
    }
    add_answer(
        operation,
        500,
        documented_problem(
            "An unexpected failure (`internal`); the details are only in the service's log",
            false,
        ),
    );
    add_answer(
        operation,
        503,
        documented_problem(
            &format!(
                "This instance has {} requests in flight (`overloaded`) or {} connections open (`too_many_connections`), or a dependency is unavailable; try again after `Retry-After`",
                stack.max_in_flight, stack.max_connections
            ),
            true,
        ),
    );
    add_answer(
        operation,
        504,
        documented_problem(
            &format!(
                "No answer within this listener's {} (`timeout`)",
                holdfast_core::format_duration(stack.timeout)
            ),
            false,
        ),
    );
}

/// Optional credentials (see `crate::auth`): none, a bearer credential or
/// an API key, and the 401 they may get when authentication is on.
fn add_authentication(operation: &mut Operation) {
    operation.security = Some(vec![
        SecurityRequirement::default(),
        SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
        SecurityRequirement::new(API_KEY_SCHEME, Vec::<String>::new()),
    ]);
    let mut unauthorized = documented_problem(
        "Authentication is configured and the request has no valid credentials (`unauthorized`)",
        false,
    );
    unauthorized.headers.insert(
        "WWW-Authenticate".to_owned(),
        RefOr::T(required(
            HeaderBuilder::new()
                .schema(Some(string_schema()))
                .description(Some(
                    "`Bearer realm=\"holdfast\"`, with `error` and `error_description` when a credential was sent and refused",
                ))
                .build(),
        )),
    );
    add_answer(operation, 401, unauthorized);
}

/// The per-client rate limit (see `crate::rate_limit`): 429 beyond it, and
/// its `RateLimit-*` headers on every answer.
fn add_rate_limit(operation: &mut Operation) {
    let mut limited = documented_problem(
        "This client made more requests to the route group than its rate limit allows (`rate_limited`); try again after `Retry-After`",
        true,
    );
    limited.headers.insert(
        "Retry-After".to_owned(),
        RefOr::T(required(retry_after_header())),
    );
    add_answer(operation, 429, limited);
    for (name, _) in rate_limit_headers() {
        add_to_every_answer(operation, name);
    }
}

/// The rate limit's headers, on every answer that went through it.
fn rate_limit_headers() -> [(&'static str, Header); 3] {
    [
        (
            "RateLimit-Limit",
            1,
            "Requests this client may make at once to the route group",
        ),
        (
            "RateLimit-Remaining",
            0,
            "Requests left of that before the limit applies",
        ),
        (
            "RateLimit-Reset",
            0,
            "Seconds until the whole allowance is back",
        ),
    ]
    .map(|(name, minimum, description)| {
        let header = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(minimum)),
            ))
            .description(Some(description))
            .build();
        (name, header)
    })
}

/// `x-request-id` and `traceparent`, which every operation takes.
fn add_request_headers(operation: &mut Operation) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for (name, description) in [
        (
            REQUEST_ID,
            "The request's id, echoed in the answer; one is made when absent",
        ),
        (
            "traceparent",
            "W3C trace context: the request's span becomes a child of it (ignored unless valid)",
        ),
    ] {
        let present = parameters
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(name)));
        if !present {
            parameters.push(RefOr::T(optional_header_parameter(name, description)));
        }
    }
}

/// A parameter of a document, for the parameter lists written by hand
/// (utoipa's derive drops the description and `required` of a parameter
/// whose schema a function gives).
pub(crate) fn parameter(
    name: &str,
    parameter_in: utoipa::openapi::path::ParameterIn,
    required: bool,
    description: &str,
    schema: impl Into<RefOr<utoipa::openapi::schema::Schema>>,
) -> utoipa::openapi::path::Parameter {
    utoipa::openapi::path::ParameterBuilder::new()
        .name(name)
        .parameter_in(parameter_in)
        .required(if required {
            utoipa::openapi::Required::True
        } else {
            utoipa::openapi::Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn optional_header_parameter(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(string_schema()))
        .build()
}

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(string_schema()))
        .description(Some(
            "The request's id: the one it was sent with, or one made for it",
        ))
        .build()
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `header` marked `required`: present on every answer it is listed on.
/// utoipa's `Header` has no field for it, so it goes in as an extension,
/// which serializes beside the other fields as OpenAPI expects.
pub(crate) fn required(mut header: Header) -> Header {
    header
        .extensions
        .get_or_insert_with(Default::default)
        .insert("required".to_owned(), serde_json::Value::Bool(true));
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathsBuilder};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{ContentBuilder, OpenApiBuilder};

    fn document(operation: Operation) -> OpenApi {
        OpenApiBuilder::new()
            .paths(PathsBuilder::new().path("/things", PathItem::new(HttpMethod::Post, operation)))
            .build()
    }

    fn statuses(doc: &serde_json::Value, path: &str, method: &str) -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} in {doc:#}"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn a_public_operation_gets_the_stack_answers_headers_and_optional_credentials() {
        let json_body = RequestBodyBuilder::new()
            .content("application/json", ContentBuilder::new().build())
            .build();
        let operation = OperationBuilder::new()
            .request_body(Some(json_body))
            .build();

        let doc = public(document(operation), &StackConfig::default());
        let doc = serde_json::to_value(&doc).unwrap();

        assert_eq!(
            statuses(&doc, "/things", "post"),
            ["401", "408", "413", "415", "429", "500", "503", "504"]
        );
        let post = &doc["paths"]["/things"]["post"];
        assert_eq!(
            post["security"],
            serde_json::json!([{}, {"bearer": []}, {"apiKey": []}])
        );
        assert_eq!(
            post["responses"]["401"]["headers"]["WWW-Authenticate"]["required"],
            true
        );
        assert_eq!(
            post["responses"]["429"]["headers"]["Retry-After"]["required"],
            true
        );
        assert_eq!(
            post["responses"]["503"]["headers"]["RateLimit-Remaining"]["$ref"],
            "#/components/headers/RateLimit-Remaining"
        );
        assert!(doc["components"]["headers"]["RateLimit-Remaining"].is_object());
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(headers, ["x-request-id", "traceparent"]);
        assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());
    }

    #[test]
    fn probes_are_neither_rate_limited_nor_authenticated() {
        let doc = public(
            document(OperationBuilder::new().build()),
            &StackConfig::default(),
        );
        let doc = serde_json::to_value(&doc).unwrap();

        let ready = &doc["paths"]["/health/ready"]["get"];
        assert!(ready["security"].is_null(), "{ready:#}");
        assert!(ready["responses"]["429"].is_null(), "{ready:#}");
        assert!(ready["responses"]["503"]["content"]["application/json"].is_object());
        assert!(ready["responses"]["503"]["content"]["application/problem+json"].is_object());
    }
}
