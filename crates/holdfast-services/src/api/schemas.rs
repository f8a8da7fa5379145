//! The OpenAPI shapes of what the users, products and orders endpoints
//! send and take. The handlers serialize the store's own types; these
//! mirror them for the document only (the store knows nothing of OpenAPI),
//! so a change to a row type is made here too.

use serde::Serialize;
use utoipa::ToSchema;

/// A user as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct UserSchema {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Lower-case email address.
    pub email: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A product as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct ProductSchema {
    /// Primary key.
    pub id: i64,
    /// Product name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i32,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A user to create; unknown fields are refused.
#[derive(Serialize, ToSchema)]
pub struct NewUserSchema {
    /// 1 to 100 characters, no control characters.
    pub name: String,
    /// `local@domain`, at most 254 characters; must be unused.
    pub email: String,
}

/// Fields of a user to change; absent fields keep their value.
#[derive(Serialize, ToSchema)]
pub struct UpdateUserSchema {
    /// A new name.
    pub name: Option<String>,
    /// A new email address.
    pub email: Option<String>,
}

/// An order as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct OrderSchema {
    /// Primary key.
    pub id: i64,
    /// Who ordered.
    pub user_id: i64,
    /// What was ordered.
    pub product_id: i64,
    /// How many units.
    pub quantity: i32,
    /// Unit price at the time of the order times quantity, in cents.
    pub total_cents: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// An order to place; unknown fields are refused.
#[derive(Serialize, ToSchema)]
pub struct NewOrderSchema {
    /// Who orders; must be known to the users endpoint.
    pub user_id: i64,
    /// What is ordered; must exist.
    pub product_id: i64,
    /// 1 to 1000 units.
    pub quantity: u32,
}

/// A read answered through the cache: where it came from, and the value.
#[derive(Serialize, ToSchema)]
pub struct CachedSchema {
    /// `cache`, `db` or `stale`.
    pub source: String,
    /// The user, product or page of products.
    pub data: serde_json::Value,
}
