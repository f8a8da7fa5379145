//! How orders are stored: placed in one statement that prices them from
//! the product row, and read by id.

use super::{Store, mysql_insert_id, now_ms, with_pool};
use crate::StoreError;
use crate::model::{Entity, NewOrder, Order};

impl Store {
    /// Places an order. The total is the product's price times the
    /// quantity, computed by the database in the same statement that
    /// inserts the order, so it uses the price of that instant. An unknown
    /// user or product is a [`StoreError::NotFound`] naming which. Stock is
    /// not reserved or decremented.
    pub async fn create_order(&self, new: NewOrder) -> Result<Order, StoreError> {
        let created_at = now_ms();
        let quantity = new.quantity.get();
        let inserted = self
            .call("create_order", async {
                with_pool!(self, |pool, sql|
                    returning: sqlx::query_as::<_, Order>(sql.insert_order_returning)
                        .bind(quantity)
                        .bind(quantity)
                        .bind(created_at)
                        .bind(new.user_id)
                        .bind(new.product_id)
                        .fetch_optional(pool)
                        .await,
                    mysql: {
                        let done = sqlx::query(sql.insert_order)
                            .bind(quantity)
                            .bind(quantity)
                            .bind(created_at)
                            .bind(new.user_id)
                            .bind(new.product_id)
                            .execute(pool)
                            .await?;
                        if done.rows_affected() == 0 {
                            return Ok(None);
                        }
                        let id = mysql_insert_id(done)?;
                        sqlx::query_as::<_, Order>(sql.order_by_id)
                            .bind(id)
                            .fetch_optional(pool)
                            .await
                    },
                )
            })
            .await;
        match inserted {
            Ok(Some(order)) => return Ok(order),
            // No row inserted (the user or product is missing), or a foreign
            // key stopped the insert (one was deleted between the
            // statement's read and its write): the same answer either way.
            Ok(None) | Err(StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other),
        }
        // Nothing was inserted: find out which side is missing, for a
        // useful answer.
        let user_exists = self
            .call("create_order", async {
                with_pool!(self, |pool, sql| sqlx::query_scalar::<_, i64>(
                    sql.count_user
                )
                .bind(new.user_id)
                .fetch_one(pool)
                .await)
            })
            .await?
            > 0;
        let (entity, id) = if user_exists {
            (Entity::Product, new.product_id)
        } else {
            (Entity::User, new.user_id)
        };
        Err(StoreError::NotFound { entity, id })
    }

    /// The order with `id`, if any.
    pub async fn order(&self, id: i64) -> Result<Option<Order>, StoreError> {
        self.delay_read(Entity::Order).await;
        self.row_by_id("order", |sql| sql.order_by_id, id).await
    }
}
