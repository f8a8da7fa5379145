//! The api role when things fail (issue 3, "Faults and bad input"), and its
//! start-up (the warm-up), over HTTP against a real redis-server and
//! SQLite.
//!
//! A module per kind of fault: [`redis_faults`] (wrong password, killed,
//! down at start, a long downtime), [`database`] (down behind a cached
//! product), [`users_side`] (never answers), [`instances`] (a write seen by
//! another instance, through Redis or the L1 broadcast), [`cache`] (one
//! database query for a hundred cold reads, and the cache metrics) and
//! [`warm_up`].

mod cache;
mod database;
mod instances;
mod redis_faults;
mod users_side;
mod warm_up;

use holdfast_services::api::ApiSettings;
use holdfast_testkit::LocalRedis;
use holdfast_testkit::roles::api::{self, Seed, TestApi};
use serde_json::Value;

/// Users and products seeded into each test's database: more products
/// than the warm-up test warms, so that one stays cold.
pub const SEED: Seed = Seed {
    users: 20,
    products: 50,
};

/// The api with [`SEED`] on a fresh redis-server (no password), once
/// Redis is ready.
pub async fn spawn_api(configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    api::spawn_api(SEED, configure).await
}

/// The api with [`SEED`] on `server`, reaching it through `redis_url`,
/// without waiting for Redis.
pub async fn spawn_api_on(
    server: LocalRedis,
    redis_url: String,
    configure: impl FnOnce(&mut ApiSettings),
) -> TestApi {
    api::spawn_api_on(server, redis_url, SEED, configure).await
}

/// A counter of the products cache in a `/health` report.
pub fn products_stat(health: &Value, name: &str) -> u64 {
    health["cache"]["products"]["stats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no products stat {name} in {health}"))
}

/// Checks that each read of `paths` succeeds from the database, around
/// the cache.
pub async fn assert_bypassed_to_the_database(app: &TestApi, paths: &[&str]) {
    for &path in paths {
        let (status, cache, body) = app.read(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(cache, "BYPASS", "{path}");
        assert_eq!(body["source"], "db", "{path}");
    }
}
