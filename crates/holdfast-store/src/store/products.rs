//! How products are read: a page in id order, or one by id. Products are
//! written only by seeding.

use super::{MAX_PAGE, Store, with_pool};
use crate::StoreError;
use crate::model::{Entity, Product};

impl Store {
    /// A page of products in id order: at most `limit` (capped at
    /// [`MAX_PAGE`]) after skipping `offset`.
    pub async fn products(&self, limit: u32, offset: u32) -> Result<Vec<Product>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::from(limit.min(MAX_PAGE));
        let offset = i64::from(offset);
        self.delay_read(Entity::Product).await;
        self.call("products", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, Product>(
                sql.products_page
            )
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
        })
        .await
    }

    /// The product with `id`, if any.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        self.delay_read(Entity::Product).await;
        self.row_by_id("product", |sql| sql.product_by_id, id).await
    }
}
