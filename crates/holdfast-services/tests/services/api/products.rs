//! Products read through the cache: a miss then a hit, pages and their
//! bounds, and the demo's artificial database delay.

use std::time::{Duration, Instant};

use holdfast_testkit::http::problem;
use holdfast_testkit::roles::api::TestApi;

use super::spawn_api;

holdfast_testkit::on_every_engine!(crate::api::on_engine =>
    the_first_product_read_comes_from_the_database_and_the_second_from_the_cache,
    a_page_of_products_is_cached_and_its_bounds_are_checked,
);

async fn the_first_product_read_comes_from_the_database_and_the_second_from_the_cache(
    app: TestApi,
) {
    let first = app.read("/api/products/1").await;
    let second = app.read("/api/products/1").await;

    assert_eq!((first.0, first.1.as_str()), (200, "MISS"));
    assert_eq!(first.2["source"], "db");
    assert_eq!(first.2["data"]["id"], 1);
    assert_eq!((second.0, second.1.as_str()), (200, "HIT"));
    assert_eq!(second.2["source"], "cache");
    assert_eq!(second.2["data"], first.2["data"]);
}

async fn a_page_of_products_is_cached_and_its_bounds_are_checked(app: TestApi) {
    let first = app.read("/api/products?limit=5&offset=2").await;
    let second = app.read("/api/products?limit=5&offset=2").await;

    assert_eq!((first.0, first.1.as_str()), (200, "MISS"));
    let page = first.2["data"].as_array().unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(page[0]["id"], 3);
    assert_eq!((second.0, second.1.as_str()), (200, "HIT"));
    for bad in ["limit=0", "limit=101", "limit=x", "offset=-1"] {
        let code = if bad.starts_with("limit") {
            "invalid_limit"
        } else {
            "invalid_offset"
        };
        problem(app.get(&format!("/api/products?{bad}")).await, 400, code).await;
    }
}

#[tokio::test]
async fn the_products_delay_applies_to_database_reads_only() {
    let app = spawn_api(|s| s.products_db_delay = Duration::from_millis(300)).await;

    let started = Instant::now();
    assert_eq!(app.read("/api/products/5").await.1, "MISS");
    let from_db = started.elapsed();
    let started = Instant::now();
    assert_eq!(app.read("/api/products/5").await.1, "HIT");
    let from_cache = started.elapsed();

    assert!(from_db >= Duration::from_millis(300), "{from_db:?}");
    assert!(from_cache < Duration::from_millis(300), "{from_cache:?}");
}
