//! Optional authentication of the public listeners, on a real api and
//! ingress: API keys in either header, HS256 and RS256 tokens, the 401
//! problem with its `WWW-Authenticate` challenge, the open probes and
//! documents, the rate limit keyed on the authenticated client, and an
//! order whose users lookup carries the caller's credentials.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use holdfast_services::auth::{Auth, AuthConfig};
use holdfast_services::rate_limit::RateLimitConfig;
use holdfast_testkit::http::problem;
use holdfast_testkit::roles::api::{Seed, spawn_api};
use holdfast_testkit::roles::ingress::spawn_ingress;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const OPS_KEY: &str = "ops-key-0123456789";
const BATCH_KEY: &str = "batch-key-0123456789";
const SECRET: &str = "a-shared-secret-of-32-bytes-or-more";

/// An RSA key pair made by `openssl`: (private PEM, public PEM).
fn rsa_pair(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (
        std::fs::read(private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}

fn config(public_pem: Option<Vec<u8>>) -> Arc<Auth> {
    Arc::new(
        Auth::new(&AuthConfig {
            api_keys: vec![
                format!("ops:{OPS_KEY}").parse().unwrap(),
                format!("batch:{BATCH_KEY}").parse().unwrap(),
            ],
            jwt_secret: Some(SECRET.to_owned()),
            jwt_public_key_pem: public_pem,
            jwt_issuer: Some("https://issuer.test".to_owned()),
            jwt_audience: Some("holdfast".to_owned()),
        })
        .unwrap(),
    )
}

fn claims(sub: &str, exp_from_now: i64) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    serde_json::json!({
        "sub": sub,
        "iss": "https://issuer.test",
        "aud": "holdfast",
        "exp": now + exp_from_now,
    })
}

fn hs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_api_takes_keys_and_tokens_and_refuses_everything_else_with_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = rsa_pair(dir.path());
    let auth = config(Some(public_pem));
    let app = spawn_api(
        Seed {
            users: 3,
            products: 3,
        },
        |s| s.stack.auth = Some(auth),
    )
    .await;
    let http = reqwest::Client::new();
    let user = app.url("/api/users/1");

    // Nothing sent: 401 with a bare challenge and what to send.
    let bare = http.get(&user).send().await.unwrap();
    assert_eq!(challenge(&bare), "Bearer realm=\"holdfast\"");
    let body = problem(bare, 401, "unauthorized").await;
    assert!(
        body["detail"].as_str().unwrap().contains("X-API-Key"),
        "{body}"
    );

    // Probes and documents stay open.
    for open in ["/health/live", "/health/ready", "/api-docs/openapi.json"] {
        let resp = http.get(app.url(open)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{open}");
    }

    // API keys, in either header.
    let by_header = http
        .get(&user)
        .header("x-api-key", OPS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let by_bearer = http.get(&user).bearer_auth(BATCH_KEY).send().await.unwrap();
    assert_eq!(by_bearer.status(), 200);

    // Tokens: HS256 and RS256.
    let token = hs256(&claims("svc-a", 600));
    assert_eq!(
        http.get(&user)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let rsa = EncodingKey::from_rsa_pem(&private_pem).unwrap();
    let rs_token =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims("svc-b", 600), &rsa).unwrap();
    assert_eq!(
        http.get(&user)
            .bearer_auth(&rs_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Refused credentials: 401 invalid_token, each with its reason.
    let refused = [
        ("a wrong key", "ops-key-0123456780".to_owned(), "not valid"),
        ("an expired token", hs256(&claims("svc-a", -600)), "expired"),
        (
            "another audience",
            hs256(
                &serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "other", "exp": jsonwebtoken::get_current_timestamp() + 600}),
            ),
            "audience",
        ),
        ("a tampered token", format!("{token}x"), "signature"),
        (
            "no audience",
            hs256(
                &serde_json::json!({"sub": "a", "iss": "https://issuer.test", "exp": jsonwebtoken::get_current_timestamp() + 600}),
            ),
            "no audience",
        ),
    ];
    for (what, credential, reason) in refused {
        let resp = http
            .get(&user)
            .bearer_auth(&credential)
            .send()
            .await
            .unwrap();
        let header = challenge(&resp);
        assert!(
            header.contains("error=\"invalid_token\""),
            "{what}: {header}"
        );
        let body = problem(resp, 401, "unauthorized").await;
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
    }

    // An order: the users lookup, over HTTP to the same listener, carries
    // the caller's key; without it the lookup itself would be refused.
    let order = http
        .post(app.url("/api/orders"))
        .header("x-api-key", OPS_KEY)
        .json(&serde_json::json!({"user_id": 1, "product_id": 1, "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201, "{}", order.text().await.unwrap());
}

/// A client whose connections come from `address`.
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_rate_limit_counts_per_authenticated_client_and_guesses_per_address() {
    let app = spawn_ingress(|s| {
        s.stack.auth = Some(config(None));
        s.stack.rate_limit = Some(RateLimitConfig {
            per_second: 1,
            burst: 3,
        });
    })
    .await;
    let job = app.url(&format!(
        "/jobs/weather/{}",
        holdfast_core::RequestId::new()
    ));
    let one_address = client_from(Ipv4Addr::new(127, 0, 0, 4));

    // Two keys from one address: each spends its own budget.
    for _ in 0..3 {
        let resp = one_address
            .get(&job)
            .header("x-api-key", OPS_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    let over = one_address
        .get(&job)
        .header("x-api-key", OPS_KEY)
        .send()
        .await
        .unwrap();
    problem(over, 429, "rate_limited").await;
    let other_key = one_address
        .get(&job)
        .header("x-api-key", BATCH_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other_key.status(), 404);

    // Guessed keys from another address share that address's budget: a
    // fresh guess does not buy a fresh budget.
    let guesser = client_from(Ipv4Addr::new(127, 0, 0, 5));
    let mut statuses = Vec::new();
    for guess in 0..5 {
        let key = format!("guess-{guess:0>16}");
        statuses.push(
            guesser
                .get(&job)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // The probes need nothing and are never limited.
    for _ in 0..5 {
        assert_eq!(
            guesser
                .get(app.url("/health/live"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn without_credentials_configured_nothing_is_asked() {
    let app = spawn_ingress(|_| {}).await;
    let job = app.url(&format!(
        "/jobs/weather/{}",
        holdfast_core::RequestId::new()
    ));
    let resp = reqwest::get(&job).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("www-authenticate").is_none());
}
