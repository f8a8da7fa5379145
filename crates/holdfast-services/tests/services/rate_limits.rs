//! Per-client rate limits: a client over its budget for a route group gets
//! 429 with the RateLimit headers and Retry-After; another client, or the
//! same client on another group, is not affected; probes are never
//! limited.

use std::net::{IpAddr, Ipv4Addr};

use holdfast_services::rate_limit::RateLimitConfig;
use holdfast_testkit::http::problem;
use holdfast_testkit::roles::ingress::spawn_ingress;

/// A client whose connections come from `address` (any of 127.0.0.0/8
/// reaches a loopback listener on Linux).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_client_over_its_budget_gets_429_and_the_others_do_not() {
    let app = spawn_ingress(|s| {
        s.stack.rate_limit = Some(RateLimitConfig {
            per_second: 1,
            burst: 3,
        });
    })
    .await;
    let unknown_job = app.url(&format!(
        "/jobs/weather/{}",
        holdfast_core::RequestId::new()
    ));
    let first = client_from(Ipv4Addr::new(127, 0, 0, 2));

    for remaining in [2, 1, 0] {
        let resp = first.get(&unknown_job).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(header(&resp, "ratelimit-limit"), 3);
        assert_eq!(header(&resp, "ratelimit-remaining"), remaining);
    }
    let refused = first.get(&unknown_job).send().await.unwrap();
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    assert!(header(&refused, "ratelimit-reset") >= 1);
    assert!(header(&refused, "retry-after") >= 1);
    let body = problem(refused, 429, "rate_limited").await;
    assert!(body["detail"].as_str().unwrap().contains("jobs"), "{body}");

    // Another group of the same client, another client on the same
    // group, and the probes: all within their own budgets.
    let other_group = first
        .post(app.url("/WeatherForecast/city"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(other_group.status(), 400);
    let second = client_from(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(second.get(&unknown_job).send().await.unwrap().status(), 404);
    for _ in 0..5 {
        let probe = first.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(probe.status(), 200);
        assert!(probe.headers().get("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn with_rate_limiting_off_no_header_is_set() {
    let app = spawn_ingress(|s| s.stack.rate_limit = None).await;
    let resp = app.get("/jobs/weather/not-an-id").await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("ratelimit-limit").is_none());
}
