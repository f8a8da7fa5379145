//! The api role over HTTP, against a real redis-server and a real database.
//!
//! The tests of what the database answers (reads through the cache,
//! writes, search, bad input, orders) run on every engine:
//! `holdfast_testkit::on_every_engine!` makes one `#[tokio::test]` per
//! engine for each (`<test>::sqlite`, `<test>::postgres`, `<test>::mysql`),
//! each with an api on its own fresh database; PostgreSQL and MariaDB run
//! when `HOLDFAST_TEST_POSTGRES_URL` / `HOLDFAST_TEST_MYSQL_URL` are set,
//! and are skipped with a note otherwise. The tests of Redis faults,
//! health, metrics and the users client do not depend on the engine and
//! run on SQLite only.
//!
//! A module per feature: [`products`], [`users`], [`bad_input`] (of both),
//! [`orders`], [`store_demo`], [`degraded`] (Redis down or disabled) and
//! [`admin`] (the admin listener and the request metrics). Where a feature
//! adds routes, a test checks the OpenAPI document describes them
//! ([`assert_documented`]).

mod admin;
mod bad_input;
mod degraded;
mod orders;
mod products;
mod store_demo;
mod users;

use std::future::Future;

use holdfast_services::api::ApiSettings;
use holdfast_testkit::db::Engine;
use holdfast_testkit::roles::api::{self, Seed, TestApi};

/// Users and products seeded into each test's database: enough for the
/// tests, quick to insert.
pub const SEED: Seed = Seed {
    users: 50,
    products: 20,
};

/// The api with [`SEED`] on a fresh redis-server and SQLite file.
pub async fn spawn_api(configure: impl FnOnce(&mut ApiSettings)) -> TestApi {
    api::spawn_api(SEED, configure).await
}

/// Runs `test` against an api with [`SEED`] on a fresh database of
/// `engine`: the runner of `on_every_engine!` in these modules.
pub async fn on_engine<F, Fut>(engine: Engine, test: F)
where
    F: FnOnce(TestApi) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    api::on_engine(engine, SEED, test).await;
}

/// Checks that the OpenAPI document of `app` describes each of `paths`.
pub async fn assert_documented(app: &TestApi, paths: &[&str]) {
    let openapi = app.get_json("/api-docs/openapi.json").await;
    for &path in paths {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
}
