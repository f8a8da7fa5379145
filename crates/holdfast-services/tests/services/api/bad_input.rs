//! Bad input to the users and products routes: each kind is answered with
//! problem details that name it, never with a server error.

use holdfast_testkit::http::problem;
use holdfast_testkit::roles::api::TestApi;
use reqwest::Method;

use super::SEED;

holdfast_testkit::on_every_engine!(crate::api::on_engine =>
    bad_input_is_answered_with_problem_details,
);

async fn bad_input_is_answered_with_problem_details(app: TestApi) {
    for path in [
        "/api/users/abc",
        "/api/users/-1",
        "/api/users/0",
        "/api/users/99999999999999999999",
        "/api/products/1.5",
    ] {
        problem(app.get(path).await, 400, "invalid_id").await;
    }
    let long_query = format!("/api/users/search?q={}", "a".repeat(101));
    for (path, code) in [
        ("/api/users/search", "invalid_query"),
        ("/api/users/search?q=%20%20", "invalid_query"),
        (long_query.as_str(), "invalid_query"),
        ("/api/users/search?q=ada&limit=1000", "invalid_limit"),
        // SQLite's LIKE would stop at the NUL and match every user.
        ("/api/users/search?q=%00", "invalid_query"),
        ("/api/users/search?q=a%00b", "invalid_query"),
    ] {
        problem(app.get(path).await, 400, code).await;
    }

    let unknown_user = format!("/api/users/{}", SEED.users + 100);
    let huge = format!(
        r#"{{"name": "Ada", "email": "a@example.com", "pad": "{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let writes = [
        (
            Method::POST,
            "/api/users",
            r#"{"name": "Ada", "email": "not-an-email"}"#,
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/users",
            r#"{"name": "Ada", "email": "a@example.com", "admin": true}"#,
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/users",
            r#"{"name": "", "email": "a@example.com"}"#,
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/users",
            r#"{"name": "Ada""#,
            400,
            "malformed_json",
        ),
        (
            Method::PUT,
            "/api/users/1",
            r#"{"email": "nope"}"#,
            422,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/users/x",
            r#"{"name": "Ada"}"#,
            400,
            "invalid_id",
        ),
        (
            Method::PUT,
            unknown_user.as_str(),
            r#"{"name": "Ada"}"#,
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/api/users",
            huge.as_str(),
            413,
            "body_too_large",
        ),
        // serde would fill the fields from an array, in order.
        (
            Method::POST,
            "/api/users",
            r#"["Arr Ay", "a@b.c"]"#,
            422,
            "invalid_body",
        ),
        (Method::PUT, "/api/users/1", "[]", 422, "invalid_body"),
        (
            Method::POST,
            "/api/orders",
            "[1, 1, 1]",
            422,
            "invalid_body",
        ),
    ];
    for (method, path, body, status, code) in writes {
        problem(app.send_json(method, path, body).await, status, code).await;
    }
    problem(app.get("/api/products/999999").await, 404, "not_found").await;
}
