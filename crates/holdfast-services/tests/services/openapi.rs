//! The OpenAPI documents the listeners serve, checked where it is cheap:
//! every operation states the answers of the listener's middleware stack,
//! its headers and its optional credentials; ids, pages and bodies state
//! their bounds; the admin listener serves a document of its own. The
//! fuzzer (`.ci/check-openapi`, schemathesis against a running stack) holds
//! the documents to the code in depth; these fail fast, without it, on
//! the regressions it would find. The last tests pin what it found.

use holdfast_testkit::http::{get_json, problem};
use holdfast_testkit::roles::ingress::{TestIngress, spawn_ingress};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::spawn_api;

/// Every operation of `doc`: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    assert!(!found.is_empty(), "no operations in {doc:#}");
    found
}

/// The statuses an operation documents.
fn statuses(operation: &Value) -> Vec<String> {
    operation["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .cloned()
        .collect()
}

/// `$ref` resolved within `doc`, or `value` itself.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} missing"))
        }
        None => value,
    }
}

/// The parameter `name` (any case) of an operation.
fn parameter<'a>(operation: &'a Value, name: &str) -> Option<&'a Value> {
    operation["parameters"].as_array()?.iter().find(|p| {
        p["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The JSON request body schema of an operation, resolved.
fn body_schema<'a>(doc: &'a Value, operation: &'a Value) -> &'a Value {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    // `Option<T>` bodies are `oneOf: [T, null]`.
    match schema["oneOf"].as_array() {
        Some(choices) => resolve(
            doc,
            choices
                .iter()
                .find(|c| c["$ref"].is_string())
                .expect("a schema among the choices"),
        ),
        None => resolve(doc, schema),
    }
}

/// The public document of the ingress and of the api, by name.
async fn public_documents() -> (TestIngress, Value, Value) {
    let ingress = spawn_ingress(|_| {}).await;
    let api = spawn_api(|_| {}).await;
    let ingress_doc = ingress.get_json("/api-docs/openapi.json").await;
    let api_doc = api.get_json("/api-docs/openapi.json").await;
    (ingress, ingress_doc, api_doc)
}

#[tokio::test]
async fn every_public_operation_documents_the_listener_answers_headers_and_credentials() {
    let (_ingress, ingress_doc, api_doc) = public_documents().await;

    for doc in [&ingress_doc, &api_doc] {
        let title = doc["info"]["title"].as_str().unwrap_or_default();
        assert!(
            doc["info"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("Authentication is off unless configured")),
            "{title}: the description says how authentication works"
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKey"]["name"],
            "X-API-Key"
        );
        for probe in ["/health/live", "/health/ready", "/health"] {
            assert!(
                doc["paths"][probe]["get"].is_object(),
                "{title}: {probe} undocumented"
            );
        }
        for (path, method, operation) in operations(doc) {
            let at = format!("{title}: {method} {path}");
            let listed = statuses(&operation);
            let mut expected = vec!["408", "413", "500", "503", "504"];
            let probe = path.starts_with("/health");
            if !probe {
                expected.extend(["401", "429"]);
                assert_eq!(
                    operation["security"],
                    json!([{}, {"bearer": []}, {"apiKey": []}]),
                    "{at}: credentials are optional"
                );
            } else {
                assert!(operation["security"].is_null(), "{at}: a probe is open");
                assert!(!listed.contains(&"429".to_owned()), "{at}: never limited");
            }
            if operation["requestBody"]["content"]["application/json"].is_object() {
                expected.push("415");
            }
            for status in expected {
                assert!(
                    listed.iter().any(|s| s == status),
                    "{at} lacks {status}: {listed:?}"
                );
            }
            for header in ["x-request-id", "traceparent"] {
                assert!(parameter(&operation, header).is_some(), "{at}: {header}");
            }
            for (status, answer) in operation["responses"].as_object().unwrap() {
                let headers = &answer["headers"];
                assert!(
                    headers["x-request-id"].is_object(),
                    "{at} {status}: x-request-id"
                );
                if !probe {
                    for header in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                        assert!(headers[header].is_object(), "{at} {status}: {header}");
                    }
                }
            }
            let limited = &operation["responses"]["429"]["headers"];
            if !probe {
                assert_eq!(limited["Retry-After"]["required"], true, "{at}");
                assert_eq!(
                    operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"], true,
                    "{at}"
                );
            }
            assert!(
                operation["responses"]["503"]["headers"]["Retry-After"].is_object(),
                "{at}: 503 Retry-After"
            );
        }
    }
}

#[tokio::test]
async fn ids_pages_and_bodies_state_the_bounds_the_handlers_enforce() {
    let (_ingress, ingress_doc, api_doc) = public_documents().await;

    let mut ids = 0;
    for (path, method, operation) in operations(&api_doc) {
        if let Some(id) = parameter(&operation, "id") {
            assert_eq!(id["schema"]["minimum"], 1, "{method} {path}");
            ids += 1;
        }
    }
    assert_eq!(ids, 5, "a user (read, change, delete), a product, an order");

    let search = &api_doc["paths"]["/api/users/search"]["get"];
    let q = parameter(search, "q").expect("q");
    assert_eq!(q["required"], true);
    assert!(
        q["schema"]["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("{0,98}")),
        "1 to 100 characters: {q}"
    );
    for (path, name, minimum, maximum) in [
        ("/api/users/search", "limit", 1, 100),
        ("/api/products", "limit", 1, 100),
        ("/api/products", "offset", 0, 1_000_000),
    ] {
        let schema = &parameter(&api_doc["paths"][path]["get"], name).expect(name)["schema"];
        assert_eq!(
            (&schema["minimum"], &schema["maximum"]),
            (&json!(minimum), &json!(maximum)),
            "{path} {name}"
        );
    }

    let bodies = [
        (&api_doc, "/api/users", "post"),
        (&api_doc, "/api/users/{id}", "put"),
        (&api_doc, "/api/orders", "post"),
        (&api_doc, "/api/store/simulate", "post"),
        (&ingress_doc, "/WeatherForecast/city", "post"),
        (&ingress_doc, "/jobs/weather", "post"),
    ];
    for (doc, path, method) in bodies {
        let schema = body_schema(doc, &doc["paths"][path][method]);
        assert_eq!(
            schema["additionalProperties"], false,
            "{method} {path} refuses unknown fields: {schema}"
        );
    }
    let order = body_schema(&api_doc, &api_doc["paths"]["/api/orders"]["post"]);
    assert_eq!(order["properties"]["quantity"]["minimum"], 1);
    assert_eq!(order["properties"]["quantity"]["maximum"], 1000);
    assert_eq!(order["properties"]["user_id"]["minimum"], 1);
    let simulate = body_schema(&api_doc, &api_doc["paths"]["/api/store/simulate"]["post"]);
    assert_eq!(simulate["properties"]["customers"]["minimum"], 1);
    assert_eq!(simulate["properties"]["customers"]["maximum"], 1000);
    let user = body_schema(&api_doc, &api_doc["paths"]["/api/users"]["post"]);
    assert!(user["properties"]["name"]["pattern"].is_string());
    assert!(
        user["properties"]["email"]["not"]["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("{253,}")),
        "at most 254 characters: {user}"
    );
    let change = body_schema(&api_doc, &api_doc["paths"]["/api/users/{id}"]["put"]);
    assert_eq!(
        change["properties"]["email"]["not"]["type"], "string",
        "a `null` email (no change) is not excluded with the long ones: {change}"
    );
    let weather = body_schema(
        &ingress_doc,
        &ingress_doc["paths"]["/WeatherForecast/city"]["post"],
    );
    assert!(weather["properties"]["city"]["pattern"].is_string());
    assert!(weather["properties"]["location"]["pattern"].is_string());
}

#[tokio::test]
async fn the_headers_the_handlers_read_and_set_are_documented() {
    let (_ingress, ingress_doc, api_doc) = public_documents().await;

    for path in ["/WeatherForecast/city", "/jobs/weather"] {
        let operation = &ingress_doc["paths"][path]["post"];
        for header in ["x-timeout-ms", "idempotency-key", "Holdfast-Durability"] {
            assert!(parameter(operation, header).is_some(), "{path}: {header}");
        }
    }
    let call = &ingress_doc["paths"]["/WeatherForecast/city"]["post"]["responses"];
    assert_eq!(
        call["200"]["headers"]["Holdfast-Durability"]["required"],
        true
    );
    let job = &ingress_doc["paths"]["/jobs/weather"]["post"]["responses"];
    assert_eq!(job["202"]["headers"]["Location"]["required"], true);
    assert_eq!(
        job["202"]["headers"]["Holdfast-Durability"]["required"],
        true
    );
    let status = &ingress_doc["paths"]["/jobs/weather/{id}"]["get"]["responses"]["200"];
    assert_eq!(
        status["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobStatus"
    );
    assert!(
        ingress_doc["components"]["schemas"]["JobState"]["enum"]
            .as_array()
            .is_some_and(|states| states.len() == 5)
    );

    for (path, statuses) in [
        ("/api/users/{id}", &["200", "404"][..]),
        ("/api/products/{id}", &["200", "404"]),
        ("/api/products", &["200"]),
    ] {
        for status in statuses {
            let x_cache = &api_doc["paths"][path]["get"]["responses"][status]["headers"]["X-Cache"];
            assert_eq!(x_cache["required"], true, "{path} {status}");
            assert_eq!(
                x_cache["schema"]["enum"],
                json!(["HIT", "MISS", "STALE", "BYPASS"])
            );
        }
    }
    for path in ["/api/users", "/api/orders"] {
        let created = &api_doc["paths"][path]["post"]["responses"]["201"];
        assert_eq!(created["headers"]["Location"]["required"], true, "{path}");
    }
}

#[tokio::test]
async fn the_admin_listener_serves_a_document_of_its_own() {
    let api = spawn_api(|_| {}).await;

    let doc = get_json(&api.client, &format!("{}/api-docs/openapi.json", api.admin)).await;

    assert_eq!(doc["info"]["title"], "holdfast admin");
    for path in [
        "/health/live",
        "/health/ready",
        "/health",
        "/metrics",
        "/logs",
    ] {
        let operation = &doc["paths"][path]["get"];
        assert!(operation.is_object(), "{path} undocumented in {doc:#}");
        // No middleware stack there: only the connection cap answers
        // for the listener.
        assert!(
            operation["responses"]["503"].is_object(),
            "{path}: too_many_connections"
        );
        assert!(operation["responses"]["429"].is_null(), "{path}");
    }
    assert!(
        doc["paths"]["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]
            .is_object()
    );
    let ui = holdfast_testkit::http::get(&api.client, &format!("{}/swagger-ui/", api.admin)).await;
    assert_eq!(ui.status(), 200);
}

// What the fuzzer found, each pinned where the code changed.

#[tokio::test]
async fn a_store_simulation_body_must_be_declared_json() {
    let api = spawn_api(|_| {}).await;

    let undeclared = api
        .client
        .post(api.url("/api/store/simulate"))
        .header("content-type", "text/plain")
        .body(r#"{"customers": 3}"#)
        .send()
        .await
        .unwrap();
    problem(undeclared, 415, "unsupported_media_type").await;
    // No body needs no media type: the default simulation.
    let empty = api
        .client
        .post(api.url("/api/store/simulate"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_is_taken_as_an_integer() {
    let api = spawn_api(|_| {}).await;

    let simulated = api
        .send_json(Method::POST, "/api/store/simulate", r#"{"customers": 2.0}"#)
        .await;
    assert_eq!(simulated.status(), 200);
    let ordered = api
        .send_json(
            Method::POST,
            "/api/orders",
            r#"{"user_id": 1.0, "product_id": 2, "quantity": 3.0}"#,
        )
        .await;
    assert_eq!(ordered.status(), 201, "{:?}", ordered.text().await);
    let fraction = api
        .send_json(Method::POST, "/api/store/simulate", r#"{"customers": 2.5}"#)
        .await;
    problem(fraction, 422, "invalid_body").await;
}

#[tokio::test]
async fn the_ingress_refuses_an_idempotency_key_it_cannot_honour_and_caps_any_timeout() {
    let ingress = spawn_ingress(|_| {}).await;
    let job = |headers: Vec<(&'static str, String)>| {
        let mut request = ingress
            .client
            .post(ingress.url("/jobs/weather"))
            .header("content-type", "application/json")
            .body(r#"{"city": "Lisbon"}"#);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    let too_long = job(vec![("idempotency-key", "k".repeat(257))])
        .await
        .unwrap();
    problem(too_long, 400, "invalid_idempotency_key").await;
    let longest = job(vec![("idempotency-key", "k".repeat(256))])
        .await
        .unwrap();
    assert_eq!(longest.status(), 202);
    // Past what a `u64` holds is as capped as any other long deadline.
    let huge = job(vec![("x-timeout-ms", "9".repeat(30))]).await.unwrap();
    assert_eq!(huge.status(), 202);
    let zero = job(vec![("x-timeout-ms", "000".to_owned())]).await.unwrap();
    problem(zero, 400, "invalid_timeout").await;
}

#[tokio::test]
async fn logs_take_the_five_level_names_and_any_count() {
    let api = spawn_api(|_| {}).await;
    let logs = |query: &str| {
        let url = format!("{}/logs?{query}", api.admin);
        let client = api.client.clone();
        async move { holdfast_testkit::http::get(&client, &url).await }
    };

    problem(logs("level=WARN").await, 400, "invalid_level").await;
    problem(logs("level=2").await, 400, "invalid_level").await;
    assert_eq!(logs("level=warn").await.status(), 200);
    assert_eq!(
        logs(&format!("limit={}", "9".repeat(30))).await.status(),
        200
    );
    problem(logs("limit=-1").await, 400, "invalid_query").await;
}

#[tokio::test]
async fn a_store_step_by_get_is_documented_as_deprecated() {
    let api = spawn_api(|_| {}).await;

    let doc = api.get_json("/api-docs/openapi.json").await;

    for step in ["join", "look-around", "served", "leave"] {
        let path = format!("/api/store/{step}");
        assert_eq!(doc["paths"][&path]["get"]["deprecated"], true, "{path}");
        assert!(
            doc["paths"][&path]["post"]["deprecated"].is_null(),
            "{path}"
        );
    }
}
