//! The store against real databases: SQLite always, PostgreSQL and MariaDB
//! when `HOLDFAST_TEST_POSTGRES_URL` / `HOLDFAST_TEST_MYSQL_URL` are set.
//!
//! Each test below is an `async fn(TestDb)`;
//! `holdfast_testkit::on_every_engine!` makes one `#[tokio::test]` per
//! engine for it (`<test>::sqlite`, `<test>::postgres`, `<test>::mysql`),
//! each on its own fresh, migrated database.

mod helpers;

use std::future::Future;
use std::time::{Duration, Instant};

use holdfast_store::seed::{DEFAULT_PRODUCTS, DEFAULT_USERS, seed_product, seed_user};
use holdfast_store::{
    DatabaseUrl, Email, Entity, NewOrder, NewUser, Quantity, SeedReport, Store, StoreError,
    StoreOptions, UpdateUser, User, UserName,
};
use holdfast_testkit::db::{Engine, TestDatabase, TestDb};
use holdfast_testkit::join_all;
use holdfast_testkit::net::SilentServer;

holdfast_testkit::on_every_engine!(holdfast_testkit::db::run =>
    migrations_apply_twice_and_from_two_processes_harmlessly,
    every_engine_ends_with_the_same_tables_and_columns,
    seeding_twice_inserts_the_rows_once,
    two_processes_seeding_at_once_leave_one_copy,
    a_user_round_trips_through_create_read_update_and_delete,
    a_duplicate_email_is_a_conflict,
    search_matches_wildcards_and_quotes_literally_and_the_table_survives,
    search_ignores_case_matches_name_or_email_and_respects_the_limit,
    search_folds_case_beyond_ascii_alike_on_every_engine,
    products_come_in_pages_in_id_order,
    an_order_total_is_the_price_times_the_quantity,
    an_order_for_an_unknown_product_or_user_is_not_found,
    a_user_with_orders_cannot_be_deleted,
    new_rows_get_ids_after_the_seeded_ones,
    the_product_read_delay_slows_product_reads_only,
    a_write_blocked_by_a_lock_is_cut_off_by_the_server_as_a_timeout,
);

fn new_user(name: &str, email: &str) -> NewUser {
    NewUser {
        name: UserName::parse(name).unwrap(),
        email: Email::parse(email).unwrap(),
    }
}

/// Creates the user `name` with `email`, which the store must accept.
async fn create_user(store: &Store, name: &str, email: &str) -> User {
    store.create_user(new_user(name, email)).await.unwrap()
}

fn order(user_id: i64, product_id: i64, quantity: i64) -> NewOrder {
    NewOrder {
        user_id,
        product_id,
        quantity: Quantity::new(quantity).unwrap(),
    }
}

async fn migrations_apply_twice_and_from_two_processes_harmlessly(db: TestDb) {
    // Arrange: the helper has migrated once already.
    let other = db.second_store().await;

    // Act
    let (again, concurrently) = tokio::join!(db.store.migrate(), other.migrate());

    // Assert
    again.unwrap();
    concurrently.unwrap();
    let counts = db.store.counts().await.unwrap();
    assert_eq!((counts.users, counts.products, counts.orders), (0, 0, 0));
    other.close().await;
}

async fn every_engine_ends_with_the_same_tables_and_columns(db: TestDb) {
    // Arrange
    let expected = [
        (
            "users",
            vec![
                "id",
                "name",
                "email",
                "created_at",
                "name_folded",
                "email_folded",
            ],
        ),
        (
            "products",
            vec![
                "id",
                "name",
                "description",
                "price_cents",
                "stock",
                "updated_at",
            ],
        ),
        (
            "orders",
            vec![
                "id",
                "user_id",
                "product_id",
                "quantity",
                "total_cents",
                "created_at",
            ],
        ),
    ];

    for (table, columns) in expected {
        // Act
        let actual = db.store.table_columns(table).await.unwrap();

        // Assert
        assert_eq!(
            actual,
            columns,
            "columns of {table} on {}",
            db.store.backend()
        );
    }
}

async fn seeding_twice_inserts_the_rows_once(db: TestDb) {
    // Act
    let first = db.store.seed_with(200, 30).await.unwrap();
    let second = db.store.seed_with(200, 30).await.unwrap();

    // Assert
    assert_eq!(
        first,
        SeedReport {
            users_inserted: 200,
            products_inserted: 30
        }
    );
    assert_eq!(second, SeedReport::default());
    let counts = db.store.counts().await.unwrap();
    assert_eq!((counts.users, counts.products), (200, 30));
    assert_eq!(db.store.user(1).await.unwrap(), Some(seed_user(1)));
    assert_eq!(db.store.user(200).await.unwrap(), Some(seed_user(200)));
    assert_eq!(db.store.product(30).await.unwrap(), Some(seed_product(30)));
}

async fn two_processes_seeding_at_once_leave_one_copy(db: TestDb) {
    // Arrange
    let other = db.second_store().await;

    // Act
    let (mine, theirs) = tokio::join!(db.store.seed_with(500, 50), other.seed_with(500, 50));

    // Assert
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    assert_eq!(mine.users_inserted + theirs.users_inserted, 500);
    assert_eq!(mine.products_inserted + theirs.products_inserted, 50);
    let counts = db.store.counts().await.unwrap();
    assert_eq!((counts.users, counts.products), (500, 50));
    other.close().await;
}

async fn a_user_round_trips_through_create_read_update_and_delete(db: TestDb) {
    // Arrange
    let created = create_user(&db.store, "Ada Lovelace", "Ada@Example.com").await;

    // Act
    let read = db.store.user(created.id).await.unwrap();
    let renamed = db
        .store
        .update_user(
            created.id,
            UpdateUser {
                name: Some(UserName::parse("Countess of Lovelace").unwrap()),
                email: None,
            },
        )
        .await
        .unwrap();
    let unchanged = db
        .store
        .update_user(created.id, UpdateUser::default())
        .await
        .unwrap();
    let missing_update = db
        .store
        .update_user(created.id + 1000, UpdateUser::default())
        .await
        .unwrap();
    let deleted = db.store.delete_user(created.id).await.unwrap();
    let deleted_again = db.store.delete_user(created.id).await.unwrap();
    let after = db.store.user(created.id).await.unwrap();

    // Assert
    assert_eq!(created.email, "ada@example.com");
    assert_eq!(read.as_ref(), Some(&created));
    let renamed = renamed.unwrap();
    assert_eq!(renamed.name, "Countess of Lovelace");
    assert_eq!(renamed.email, created.email);
    assert_eq!(renamed.created_at, created.created_at);
    assert_eq!(unchanged, Some(renamed));
    assert_eq!(missing_update, None);
    assert!(deleted);
    assert!(!deleted_again);
    assert_eq!(after, None);
    let json = serde_json::to_string(&created).unwrap();
    assert_eq!(serde_json::from_str::<User>(&json).unwrap(), created);
}

async fn a_duplicate_email_is_a_conflict(db: TestDb) {
    // Arrange
    let ada = create_user(&db.store, "Ada", "ada@example.com").await;
    let grace = create_user(&db.store, "Grace", "grace@example.com").await;

    // Act
    let same_email = db
        .store
        .create_user(new_user("Ada Again", "ADA@example.com"))
        .await;
    let taken_by_update = db
        .store
        .update_user(
            grace.id,
            UpdateUser {
                name: None,
                email: Some(Email::parse("ada@example.com").unwrap()),
            },
        )
        .await;

    // Assert
    for result in [same_email.map(drop), taken_by_update.map(drop)] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        assert_eq!(err.code(), "conflict");
        assert!(!err.is_retryable());
    }
    assert_eq!(
        db.store.user(grace.id).await.unwrap().unwrap().email,
        grace.email
    );
    assert_eq!(db.store.counts().await.unwrap().users, 2);
    assert_eq!(db.store.user(ada.id).await.unwrap(), Some(ada));
}

async fn search_matches_wildcards_and_quotes_literally_and_the_table_survives(db: TestDb) {
    // Arrange
    db.store.seed_with(100, 0).await.unwrap();
    let percent = create_user(&db.store, "Half 100% Off", "percent@example.com").await;
    let underscore = create_user(&db.store, "under_score", "underscore@example.com").await;
    let quote = create_user(&db.store, "Miles O'Brien", "obrien@example.com").await;
    let bang = create_user(&db.store, "Wow!", "bang@example.com").await;
    let users_before = db.store.counts().await.unwrap().users;

    // Act
    let by_percent = db.store.search_users("%", 50).await.unwrap();
    let by_underscore = db.store.search_users("_", 50).await.unwrap();
    let by_quote = db.store.search_users("'", 50).await.unwrap();
    let by_bang = db.store.search_users("!", 50).await.unwrap();
    let by_injection = db
        .store
        .search_users("'; DROP TABLE users; --", 50)
        .await
        .unwrap();
    let by_union = db
        .store
        .search_users("x' UNION SELECT 1, 'a', 'b', 2 --", 50)
        .await
        .unwrap();
    let by_backslash = db.store.search_users("\\", 50).await.unwrap();
    let by_empty = db.store.search_users("   ", 50).await.unwrap();

    // Assert
    assert_eq!(by_percent, vec![percent]);
    assert_eq!(by_underscore, vec![underscore]);
    assert_eq!(by_quote, vec![quote]);
    assert_eq!(by_bang, vec![bang]);
    assert!(by_injection.is_empty());
    assert!(by_union.is_empty());
    assert!(by_backslash.is_empty());
    assert!(by_empty.is_empty());
    assert_eq!(db.store.counts().await.unwrap().users, users_before);
    assert_eq!(db.store.user(1).await.unwrap(), Some(seed_user(1)));
    let too_long = db.store.search_users(&"a".repeat(300), 10).await;
    assert!(matches!(too_long, Err(StoreError::Invalid { .. })));
}

async fn search_ignores_case_matches_name_or_email_and_respects_the_limit(db: TestDb) {
    // Arrange
    db.store.seed_with(300, 0).await.unwrap();
    let seeded: Vec<User> = (1..=300).map(seed_user).collect();
    let first_name = seeded[0].name.split(' ').next().unwrap().to_owned();
    let expected_by_name: Vec<User> = seeded
        .iter()
        .filter(|user| {
            user.name
                .to_lowercase()
                .contains(&first_name.to_lowercase())
                || user.email.contains(&first_name.to_lowercase())
        })
        .cloned()
        .collect();

    // Act
    let upper = db
        .store
        .search_users(&first_name.to_uppercase(), 1000)
        .await
        .unwrap();
    let limited = db.store.search_users(&first_name, 2).await.unwrap();
    let by_email = db.store.search_users(".150@EXAMPLE.com", 10).await.unwrap();

    // Assert
    assert_eq!(upper, expected_by_name);
    assert_eq!(limited, expected_by_name[..2].to_vec());
    assert_eq!(by_email, vec![seed_user(150)]);
}

async fn search_folds_case_beyond_ascii_alike_on_every_engine(db: TestDb) {
    let emile = create_user(&db.store, "ÉMILE Zola", "ez@example.com").await;
    for query in ["émile", "Émile", "ÉMILE", "mile z"] {
        let found = db.store.search_users(query, 10).await.unwrap();
        assert_eq!(found, vec![emile.clone()], "{query}");
    }
    // A changed name is searched by the new name only.
    let changes = UpdateUser {
        name: Some(UserName::parse("Ödön Horváth").unwrap()),
        email: None,
    };
    let renamed = db
        .store
        .update_user(emile.id, changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.store.search_users("öDÖN", 10).await.unwrap(),
        vec![renamed]
    );
    assert!(db.store.search_users("émile", 10).await.unwrap().is_empty());

    // A row written without its folded copies (before the migration that
    // added them) gets them when the store migrates again.
    helpers::run_statements(
        &db,
        &["INSERT INTO users (name, email, created_at) VALUES ('ÅSA Larsson', 'al@example.com', 1)"],
    )
    .await;
    assert!(db.store.search_users("åsa", 10).await.unwrap().is_empty());
    db.store.migrate().await.unwrap();
    let found = db.store.search_users("åsa", 10).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "ÅSA Larsson");
}

async fn products_come_in_pages_in_id_order(db: TestDb) {
    // Arrange
    db.store.seed_with(0, 25).await.unwrap();

    // Act
    let first = db.store.products(10, 0).await.unwrap();
    let last = db.store.products(10, 20).await.unwrap();
    let beyond = db.store.products(10, 100).await.unwrap();
    let none = db.store.products(0, 0).await.unwrap();

    // Assert
    assert_eq!(first, (1..=10).map(seed_product).collect::<Vec<_>>());
    assert_eq!(last, (21..=25).map(seed_product).collect::<Vec<_>>());
    assert!(beyond.is_empty());
    assert!(none.is_empty());
    assert_eq!(db.store.product(26).await.unwrap(), None);
}

async fn an_order_total_is_the_price_times_the_quantity(db: TestDb) {
    // Arrange
    db.store.seed_with(5, 5).await.unwrap();
    let product = db.store.product(3).await.unwrap().unwrap();

    // Act
    let placed = db.store.create_order(order(2, 3, 7)).await.unwrap();
    let read = db.store.order(placed.id).await.unwrap();

    // Assert
    assert_eq!(placed.user_id, 2);
    assert_eq!(placed.product_id, 3);
    assert_eq!(placed.quantity, 7);
    assert_eq!(placed.total_cents, product.price_cents * 7);
    assert_eq!(read, Some(placed));
    assert_eq!(db.store.order(9999).await.unwrap(), None);
}

async fn an_order_for_an_unknown_product_or_user_is_not_found(db: TestDb) {
    // Arrange
    db.store.seed_with(5, 5).await.unwrap();

    // Act
    let unknown_product = db.store.create_order(order(1, 999, 1)).await;
    let unknown_user = db.store.create_order(order(999, 1, 1)).await;

    // Assert
    assert_eq!(
        unknown_product.unwrap_err(),
        StoreError::NotFound {
            entity: Entity::Product,
            id: 999
        }
    );
    assert_eq!(
        unknown_user.unwrap_err(),
        StoreError::NotFound {
            entity: Entity::User,
            id: 999
        }
    );
    assert_eq!(db.store.counts().await.unwrap().orders, 0);
}

async fn a_user_with_orders_cannot_be_deleted(db: TestDb) {
    // Arrange
    db.store.seed_with(3, 3).await.unwrap();
    db.store.create_order(order(1, 1, 1)).await.unwrap();

    // Act
    let result = db.store.delete_user(1).await;

    // Assert
    assert!(
        matches!(result, Err(StoreError::Conflict { .. })),
        "{result:?}"
    );
    assert_eq!(db.store.user(1).await.unwrap(), Some(seed_user(1)));
}

async fn new_rows_get_ids_after_the_seeded_ones(db: TestDb) {
    // Arrange
    db.store.seed_with(40, 0).await.unwrap();

    // Act
    let created = create_user(&db.store, "Newcomer", "newcomer@example.com").await;

    // Assert
    assert_eq!(created.id, 41);
}

async fn the_product_read_delay_slows_product_reads_only(db: TestDb) {
    // Arrange
    db.store.seed_with(1, 1).await.unwrap();
    let delay = Duration::from_millis(300);
    let store = db.store.clone().with_product_read_delay(delay);

    // Act
    let started = Instant::now();
    let product = store.product(1).await.unwrap();
    let product_took = started.elapsed();
    let started = Instant::now();
    let user = store.user(1).await.unwrap();
    let user_took = started.elapsed();

    // Assert: the sleep guarantees the lower bound; the upper bound only
    // says the user read did not sleep as well.
    assert!(product.is_some() && user.is_some());
    assert!(product_took >= delay, "product read took {product_took:?}");
    assert!(user_took < delay, "user read took {user_took:?}");
    assert_eq!(db.store.read_delay(Entity::Product), delay);
    assert_eq!(db.store.read_delay(Entity::User), Duration::ZERO);
}

async fn a_write_blocked_by_a_lock_is_cut_off_by_the_server_as_a_timeout(db: TestDb) {
    // Arrange: a store whose server-side limit is short and whose
    // client-side limit is long, so only the server can end the wait.
    let options = StoreOptions {
        statement_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    };
    let store = Store::open(&db.url, options).await.unwrap();
    let lock = helpers::lock_users_table(&db).await;

    // Act
    let started = Instant::now();
    let result = store
        .create_user(new_user("Blocked", "blocked@example.com"))
        .await;
    let took = started.elapsed();

    // Assert
    lock.release().await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { .. }),
        "{}: {err:?}",
        db.store.backend()
    );
    assert!(err.is_retryable());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    store.close().await;
}

/// The only test that seeds the full 10,000 users: once per engine, in
/// parallel, then compares the engines with each other and with the
/// generator.
#[tokio::test]
async fn the_full_seed_is_the_same_on_every_engine_and_idempotent() {
    // Arrange
    let mut databases = Vec::new();
    for engine in Engine::ALL {
        if let Some(database) = TestDatabase::create(engine).await {
            databases.push((engine, database));
        }
    }

    // Act
    let seeded = join_all(databases.iter().map(|(engine, database)| {
        let store = database.db.store.clone();
        let engine = *engine;
        async move {
            let started = Instant::now();
            let first = store.seed().await.unwrap();
            let took = started.elapsed();
            eprintln!("seeding {engine:?} with the full seed took {took:?}");
            let second = store.seed().await.unwrap();
            let counts = store.counts().await.unwrap();
            let samples = (
                store.user(1).await.unwrap(),
                store.user(i64::from(DEFAULT_USERS)).await.unwrap(),
                store.product(i64::from(DEFAULT_PRODUCTS)).await.unwrap(),
                store.search_users("lovelace", 5).await.unwrap(),
            );
            (engine, first, second, counts, samples)
        }
    }))
    .await;

    // Assert
    for (engine, first, second, counts, samples) in &seeded {
        assert_eq!(
            *first,
            SeedReport {
                users_inserted: u64::from(DEFAULT_USERS),
                products_inserted: u64::from(DEFAULT_PRODUCTS)
            },
            "{engine:?}"
        );
        assert_eq!(*second, SeedReport::default(), "{engine:?}");
        assert_eq!(counts.users, i64::from(DEFAULT_USERS), "{engine:?}");
        assert_eq!(counts.products, i64::from(DEFAULT_PRODUCTS), "{engine:?}");
        assert_eq!(samples.0, Some(seed_user(1)), "{engine:?}");
        assert_eq!(
            samples.1,
            Some(seed_user(i64::from(DEFAULT_USERS))),
            "{engine:?}"
        );
        assert_eq!(
            samples.2,
            Some(seed_product(i64::from(DEFAULT_PRODUCTS))),
            "{engine:?}"
        );
        assert_eq!(samples.3.len(), 5, "{engine:?}");
        assert_eq!(
            samples.3, seeded[0].4.3,
            "{engine:?} against {:?}",
            seeded[0].0
        );
    }
    for (_, database) in databases {
        database.drop_database().await;
    }
}

#[tokio::test]
async fn the_backend_follows_the_url() {
    for engine in Engine::ALL {
        let Some(database) = TestDatabase::create(engine).await else {
            continue;
        };
        assert_eq!(database.db.store.backend(), engine.backend());
        database.db.store.ping().await.unwrap();
        database.drop_database().await;
    }
}

/// Options that give up on a dead server after half a second: the tests
/// of the defaults (2 s) are the PostgreSQL one below and the silent server;
/// the others check the same path without spending the full timeout.
fn quick_to_give_up() -> StoreOptions {
    StoreOptions {
        acquire_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    }
}

/// The URL of a database on a local port where nothing listens, as
/// `user@` of `scheme`.
fn down_server_url(scheme_and_user: &str) -> DatabaseUrl {
    let port = holdfast_testkit::free_port();
    DatabaseUrl::parse(&format!("{scheme_and_user}@127.0.0.1:{port}/test")).unwrap()
}

/// Runs `operation` and measures it.
async fn timed<T>(operation: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let outcome = operation.await;
    (outcome, started.elapsed())
}

/// Checks that `result` failed as `db_unavailable` within three seconds,
/// and returns the error for further checks.
fn assert_unavailable_within_three_seconds<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    took: Duration,
) -> StoreError {
    let err = result.unwrap_err();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(err.code(), "db_unavailable", "{err:?}");
    err
}

/// Checks that a product read from a store opened with `options` on `url`,
/// where nothing listens, fails as a retryable `db_unavailable` within
/// three seconds.
async fn assert_a_read_is_unavailable_within_three_seconds(
    url: DatabaseUrl,
    options: StoreOptions,
) {
    // Arrange
    let store = Store::open(&url, options).await.unwrap();

    // Act
    let (result, took) = timed(store.product(1)).await;

    // Assert
    let err = assert_unavailable_within_three_seconds(result, took);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_postgres_server_that_is_down_is_unavailable_within_three_seconds() {
    let url = down_server_url("postgres://postgres");
    assert_a_read_is_unavailable_within_three_seconds(url, StoreOptions::default()).await;
}

#[tokio::test]
async fn a_mysql_server_that_is_down_is_unavailable_within_three_seconds() {
    let url = down_server_url("mysql://root");
    assert_a_read_is_unavailable_within_three_seconds(url, quick_to_give_up()).await;
}

#[tokio::test]
async fn connecting_eagerly_to_a_database_that_is_down_fails_within_three_seconds() {
    // Arrange
    let url = down_server_url("postgres://postgres");

    // Act
    let (result, took) = timed(Store::connect(&url, quick_to_give_up())).await;

    // Assert
    assert_unavailable_within_three_seconds(result, took);
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_fails_within_three_seconds_not_a_hang() {
    let outcomes = join_all(["postgres", "mysql"].map(|scheme| async move {
        // Arrange
        let server = SilentServer::start().await;
        let port = server.port();
        let url = DatabaseUrl::parse(&format!("{scheme}://root@127.0.0.1:{port}/test")).unwrap();
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();

        // Act
        let (result, took) = timed(store.user(1)).await;
        drop(server);
        (scheme, result, took)
    }))
    .await;

    // Assert
    for (scheme, result, took) in outcomes {
        let err = result.unwrap_err();
        assert!(took < Duration::from_secs(3), "{scheme}: took {took:?}");
        assert!(err.is_retryable(), "{scheme}: {err:?}");
    }
}

#[tokio::test]
async fn an_sqlite_file_in_a_missing_directory_is_created_with_its_directory() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("data dir")
        .join("nested")
        .join("holdfast.db");
    let url = DatabaseUrl::sqlite_file(&path);

    // Act
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.seed_with(3, 3).await.unwrap();
    store.close().await;

    // Assert
    assert!(path.exists());
    let reopened = Store::connect(&url, StoreOptions::default()).await.unwrap();
    assert_eq!(reopened.counts().await.unwrap().users, 3);
    reopened.close().await;
}

#[tokio::test]
async fn an_in_memory_sqlite_database_keeps_its_data_across_connections() {
    // Arrange
    let url = DatabaseUrl::parse("sqlite::memory:").unwrap();
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();

    // Act
    store.seed_with(20, 2).await.unwrap();
    let reads = join_all((1..=20).map(|id| {
        let store = store.clone();
        async move { store.user(id).await.unwrap() }
    }))
    .await;

    // Assert
    assert!(reads.iter().all(Option::is_some));
}

#[tokio::test]
async fn an_unsupported_or_malformed_url_is_invalid() {
    let scheme = DatabaseUrl::parse("oracle://scott:tiger@db/orcl").unwrap_err();
    assert_eq!(scheme.code(), "invalid");
    let malformed = DatabaseUrl::parse("postgres://[::1").unwrap();
    let opened = Store::open(&malformed, StoreOptions::default()).await;
    assert_eq!(opened.unwrap_err().code(), "invalid");
}
