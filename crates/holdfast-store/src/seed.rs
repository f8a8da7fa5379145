//! Deterministic seed data: the same users and products on every engine and
//! every run.
//!
//! Row `n` is a pure function of `n` ([`seed_user`], [`seed_product`]): a
//! SplitMix64 generator seeded from the row number picks from fixed word
//! lists. The generator is written here rather than taken from a crate so
//! that a dependency update can never change the demo data. Seeding inserts
//! rows with their fixed ids in multi-row INSERTs inside one transaction,
//! and only into an empty table, so running it twice, or from two processes
//! at once, leaves one copy.

use serde::{Deserialize, Serialize};
use sqlx::query_builder::Separated;
use sqlx::{Database, Executor, FromRow, IntoArguments, QueryBuilder, Transaction};

use crate::Backend;
use crate::StoreError;
use crate::model::{Product, User};
use crate::store::{Store, with_pool};

/// Users the default seed creates.
pub const DEFAULT_USERS: u32 = 10_000;

/// Products the default seed creates.
pub const DEFAULT_PRODUCTS: u32 = 1_000;

/// The fixed seed of the generator ("holdfast" in ASCII).
const SEED: u64 = 0x686f_6c64_6661_7374;

/// Seeded times count from 2025-01-01T00:00:00Z, so they never depend on
/// when the seed ran.
const SEED_EPOCH_MS: i64 = 1_735_689_600_000;

/// Rows per INSERT. Each user row binds 4 values and each product row 6,
/// far below the bind limits of all three engines (32,766 on SQLite,
/// 65,535 on the others), while a few statements carry 10,000 rows.
const USERS_PER_INSERT: usize = 1000;
const PRODUCTS_PER_INSERT: usize = 500;

/// What a seeding run inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    /// Users inserted (0 when the table already had rows).
    pub users_inserted: u64,
    /// Products inserted (0 when the table already had rows).
    pub products_inserted: u64,
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Barbara", "Brian", "Claude", "Dennis", "Donald", "Edsger", "Frances", "Grace",
    "Guido", "Hedy", "Ivan", "James", "Jean", "John", "Ken", "Leslie", "Linus", "Margaret", "Mary",
    "Niklaus", "Radia", "Rasmus", "Richard", "Robin", "Sophie", "Tim", "Ward", "Yukihiro", "Anita",
    "Bjarne", "Carol", "Dana", "Elena", "Farah", "Hiro", "Ines", "Kofi", "Lena",
];

const LAST_NAMES: &[&str] = &[
    "Allen",
    "Backus",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Floyd",
    "Goldberg",
    "Hamilton",
    "Hopper",
    "Iverson",
    "Johnson",
    "Kahn",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "McCarthy",
    "Milner",
    "Naur",
    "Perlman",
    "Ritchie",
    "Shannon",
    "Stroustrup",
    "Thompson",
    "Torvalds",
    "Turing",
    "Van Rossum",
    "Wilkes",
    "Wirth",
    "Yao",
];

const ADJECTIVES: &[&str] = &[
    "Sturdy",
    "Compact",
    "Quiet",
    "Rapid",
    "Classic",
    "Modern",
    "Rugged",
    "Elegant",
    "Handy",
    "Precise",
    "Gentle",
    "Bright",
    "Smooth",
    "Solid",
    "Light",
    "Heavy-duty",
    "Portable",
    "Vintage",
    "Ergonomic",
    "Foldable",
];

const MATERIALS: &[&str] = &[
    "Oak",
    "Steel",
    "Copper",
    "Bamboo",
    "Linen",
    "Wool",
    "Ceramic",
    "Glass",
    "Aluminium",
    "Leather",
    "Cotton",
    "Granite",
];

const NOUNS: &[&str] = &[
    "Chair", "Lamp", "Kettle", "Backpack", "Notebook", "Teapot", "Desk", "Shelf", "Clock", "Mug",
    "Blanket", "Bottle", "Bench", "Planter", "Tray", "Stool", "Vase", "Bowl", "Knife", "Toolbox",
];

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and fully specified,
/// so its output is the same forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn for_row(table_salt: u64, row: i64) -> Self {
        SplitMix64(SEED ^ table_salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ row.unsigned_abs())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`. The modulo bias is irrelevant for demo data.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[usize::try_from(self.below(words.len() as u64)).unwrap_or(0)]
    }
}

/// The user the seed stores under `id` (1-based).
pub fn seed_user(id: i64) -> User {
    let mut rng = SplitMix64::for_row(1, id);
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let email = format!(
        "{}.{}.{id}@example.com",
        first.to_lowercase(),
        last.to_lowercase().replace(' ', "")
    );
    User {
        id,
        name: format!("{first} {last}"),
        email,
        created_at: SEED_EPOCH_MS + id * 60_000,
    }
}

/// The product the seed stores under `id` (1-based).
pub fn seed_product(id: i64) -> Product {
    let mut rng = SplitMix64::for_row(2, id);
    let adjective = rng.pick(ADJECTIVES);
    let material = rng.pick(MATERIALS);
    let noun = rng.pick(NOUNS);
    // Prices end in 99 cents, from 0.99 to 499.99.
    let price_cents = i64::try_from(rng.below(500)).unwrap_or(0) * 100 + 99;
    let stock = i32::try_from(rng.below(501)).unwrap_or(0);
    let days = rng.below(5) + 1;
    Product {
        id,
        name: format!("{adjective} {material} {noun}"),
        description: format!(
            "A {} {} in {}. Ships in {days} day{}.",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase(),
            if days == 1 { "" } else { "s" }
        ),
        price_cents,
        stock,
        updated_at: SEED_EPOCH_MS + id * 3_600_000,
    }
}

/// How one table is seeded, besides its rows.
struct Table {
    /// Counts the table's rows: only an empty table is seeded.
    count: &'static str,
    /// `INSERT INTO table (columns) `, to which the rows' VALUES are added.
    insert: &'static str,
    /// Rows per INSERT.
    per_insert: usize,
    /// Moves the table's id sequence past the seeded ids, which do not
    /// advance it (PostgreSQL only).
    reset_sequence: &'static str,
}

/// Inserts rows `1..=rows`, made by `make` and bound column by column by
/// `bind`, into `table` if it is empty; the rows inserted. Generic over the
/// engine because [`with_pool!`] calls it with each engine's transaction.
async fn fill_table<DB, R>(
    tx: &mut Transaction<'_, DB>,
    backend: Backend,
    table: Table,
    rows: u32,
    make: fn(i64) -> R,
    mut bind: impl FnMut(Separated<'_, DB, &'static str>, &R),
) -> Result<u64, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let existing: i64 = sqlx::query_scalar(table.count).fetch_one(&mut **tx).await?;
    if existing != 0 || rows == 0 {
        return Ok(0);
    }
    let made: Vec<R> = (1..=i64::from(rows)).map(make).collect();
    for chunk in made.chunks(table.per_insert) {
        let mut insert = QueryBuilder::<DB>::new(table.insert);
        insert.push_values(chunk, &mut bind);
        insert.build().execute(&mut **tx).await?;
    }
    if backend == Backend::Postgres {
        sqlx::query(table.reset_sequence).execute(&mut **tx).await?;
    }
    Ok(u64::from(rows))
}

impl Store {
    /// Seeds [`DEFAULT_USERS`] users and [`DEFAULT_PRODUCTS`] products into
    /// whichever of the two tables is empty.
    pub async fn seed(&self) -> Result<SeedReport, StoreError> {
        self.seed_with(DEFAULT_USERS, DEFAULT_PRODUCTS).await
    }

    /// Seeds users `1..=users` and products `1..=products`, each table only
    /// when it is empty. Two processes seeding at once end with one copy:
    /// the later one's fixed ids collide, its transaction rolls back, and
    /// it reports nothing inserted.
    pub async fn seed_with(&self, users: u32, products: u32) -> Result<SeedReport, StoreError> {
        let backend = self.backend();
        let work = async {
            with_pool!(self, |pool, sql| {
                // SQLite: take the write lock up front, so a second seeder
                // waits here and then sees the rows, instead of failing to
                // upgrade a read lock later.
                let begin = if backend == Backend::Sqlite {
                    "BEGIN IMMEDIATE"
                } else {
                    "BEGIN"
                };
                let mut tx = pool.begin_with(begin).await?;

                let report = SeedReport {
                    users_inserted: fill_table(
                        &mut tx,
                        backend,
                        Table {
                            count: sql.count_users,
                            insert: "INSERT INTO users \
                                (id, name, email, created_at, name_folded, email_folded) ",
                            per_insert: USERS_PER_INSERT,
                            reset_sequence: sql.reset_users_sequence,
                        },
                        users,
                        seed_user,
                        |mut row, user| {
                            row.push_bind(user.id)
                                .push_bind(user.name.as_str())
                                .push_bind(user.email.as_str())
                                .push_bind(user.created_at)
                                .push_bind(crate::store::fold(&user.name))
                                .push_bind(crate::store::fold(&user.email));
                        },
                    )
                    .await?,
                    products_inserted: fill_table(
                        &mut tx,
                        backend,
                        Table {
                            count: sql.count_products,
                            insert: "INSERT INTO products \
                                (id, name, description, price_cents, stock, updated_at) ",
                            per_insert: PRODUCTS_PER_INSERT,
                            reset_sequence: sql.reset_products_sequence,
                        },
                        products,
                        seed_product,
                        |mut row, product| {
                            row.push_bind(product.id)
                                .push_bind(product.name.as_str())
                                .push_bind(product.description.as_str())
                                .push_bind(product.price_cents)
                                .push_bind(product.stock)
                                .push_bind(product.updated_at);
                        },
                    )
                    .await?,
                };
                tx.commit().await?;
                Ok(report)
            })
        };
        match self
            .call_within("seed", self.options().maintenance_timeout, work)
            .await
        {
            Ok(report) => {
                tracing::info!(
                    backend = %backend,
                    users = report.users_inserted,
                    products = report.products_inserted,
                    "seed data inserted"
                );
                Ok(report)
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(backend = %backend, "another process seeded first");
                Ok(SeedReport::default())
            }
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_row_depends_only_on_its_id() {
        assert_eq!(seed_user(42), seed_user(42));
        assert_eq!(seed_product(7), seed_product(7));
        assert_ne!(seed_user(1), seed_user(2));
    }

    #[test]
    fn seeded_emails_are_unique_and_parse() {
        let mut emails: Vec<String> = (1..=i64::from(DEFAULT_USERS))
            .map(|id| seed_user(id).email)
            .collect();
        for email in &emails {
            crate::Email::parse(email).unwrap();
        }
        emails.sort();
        emails.dedup();
        assert_eq!(emails.len(), DEFAULT_USERS as usize);
    }

    #[test]
    fn seeded_products_have_sane_prices_and_stock() {
        for id in 1..=i64::from(DEFAULT_PRODUCTS) {
            let product = seed_product(id);
            assert!((99..=49_999).contains(&product.price_cents));
            assert!((0..=500).contains(&product.stock));
        }
    }
}
