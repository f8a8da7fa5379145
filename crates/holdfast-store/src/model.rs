//! Domain types: the rows the store returns and the inputs it accepts.
//!
//! Rows ([`User`], [`Product`], [`Order`]) are plain data that serialize to
//! JSON as they are, so a cache can keep them and an API can return them.
//! Inputs ([`NewUser`], [`UpdateUser`], [`NewOrder`]) are built from parsed
//! values ([`Email`], [`UserName`], [`Quantity`]) whose fields are private:
//! once a value exists it is valid, and a handler deserializing JSON into an
//! input gets the checks for free. Times are milliseconds since the Unix
//! epoch, the one representation all three engines store the same way.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// `Display` as the value's `as_str()`, for the named values of the store.
macro_rules! display_as_str {
    ($type:ty) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use display_as_str;

/// What a parsed text value ([`Email`], [`UserName`]) has besides its
/// `parse`: its text back (`as_str`, documented by `$as_str_doc`),
/// `TryFrom<String>`, through which serde parses it on the way in, the plain
/// `String` serde writes on the way out, and `Display`.
macro_rules! text_value {
    ($type:ident, $as_str_doc:literal) => {
        impl $type {
            #[doc = $as_str_doc]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $type {
            type Error = InputError;

            fn try_from(raw: String) -> Result<Self, Self::Error> {
                $type::parse(&raw)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.0
            }
        }

        display_as_str!($type);
    };
}

/// The kinds of rows the store keeps, for errors and per-entity settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A row of `users`.
    User,
    /// A row of `products`.
    Product,
    /// A row of `orders`.
    Order,
}

impl Entity {
    /// The lower-case singular name (`user`, `product`, `order`).
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Product => "product",
            Entity::Order => "order",
        }
    }
}

display_as_str!(Entity);

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Unique, lower-case email address.
    pub email: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    /// Primary key.
    pub id: i64,
    /// Product name.
    pub name: String,
    /// Longer text for a product page.
    pub description: String,
    /// Unit price in cents (integers, so totals never round).
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i32,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Order {
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

/// The fields of a user to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Display name.
    pub name: UserName,
    /// Email address; must not belong to another user.
    pub email: Email,
}

/// A change to a user: fields left `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new display name.
    #[serde(default)]
    pub name: Option<UserName>,
    /// A new email address; must not belong to another user.
    #[serde(default)]
    pub email: Option<Email>,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders; must exist.
    pub user_id: i64,
    /// What is ordered; must exist.
    pub product_id: i64,
    /// How many units.
    pub quantity: Quantity,
}

/// Why an input value was rejected. Each message is safe to show to the
/// person who typed the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The email address does not have the shape `local@domain`.
    #[error("invalid email: {0}")]
    Email(&'static str),
    /// The name is empty, too long or contains control characters.
    #[error("invalid name: {0}")]
    Name(&'static str),
    /// The quantity is outside 1..=1000.
    #[error("invalid quantity: must be between 1 and {max}", max = Quantity::MAX)]
    Quantity,
}

impl From<InputError> for StoreError {
    fn from(err: InputError) -> Self {
        StoreError::Invalid {
            reason: err.to_string(),
        }
    }
}

/// An email address of a plausible shape, trimmed and lower-cased.
///
/// The check is the basic one (one `@`, non-empty parts, at most 254
/// characters, no spaces or control characters); deliverability is for a
/// confirmation mail to prove. Lower-casing makes the unique constraint
/// case-insensitive on every engine alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Longest address allowed (RFC 5321 path limit minus the brackets).
    pub const MAX_LEN: usize = 254;

    /// Parses an address.
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(InputError::Email("empty"));
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(InputError::Email("longer than 254 characters"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InputError::Email("contains spaces or control characters"));
        }
        let mut parts = email.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(InputError::Email("needs exactly one @"));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(InputError::Email("needs text before and after the @"));
        }
        Ok(Email(email))
    }
}

text_value!(Email, "The address as text.");

/// A user's display name: trimmed, 1 to 100 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Longest name allowed, in characters (the column is VARCHAR(100)).
    pub const MAX_LEN: usize = 100;

    /// Parses a name.
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InputError::Name("empty"));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(InputError::Name("longer than 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(InputError::Name("contains control characters"));
        }
        Ok(UserName(name.to_owned()))
    }
}

text_value!(UserName, "The name as text.");

/// How many units an order takes: 1 to 1000, which also keeps
/// price × quantity far from overflowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct Quantity(i32);

impl Quantity {
    /// Largest quantity one order may take.
    pub const MAX: i32 = 1000;

    /// Parses a quantity.
    pub fn new(quantity: i64) -> Result<Self, InputError> {
        match i32::try_from(quantity) {
            Ok(q) if (1..=Self::MAX).contains(&q) => Ok(Quantity(q)),
            _ => Err(InputError::Quantity),
        }
    }

    /// The number of units.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = InputError;

    fn try_from(quantity: i64) -> Result<Self, Self::Error> {
        Quantity::new(quantity)
    }
}

impl From<Quantity> for i32 {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn an_email_without_one_at_and_two_parts_is_rejected() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "ada@",
            "a@b@c",
            "ada lovelace@example.com",
            "ada\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn a_name_must_have_one_to_a_hundred_characters() {
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse(&"é".repeat(101)).is_err());
        assert!(UserName::parse("tab\there").is_err());
    }

    #[test]
    fn a_quantity_is_between_one_and_a_thousand() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(1001).is_err());
        assert!(Quantity::new(i64::MAX).is_err());
        assert_eq!(Quantity::new(3).unwrap().get(), 3);
    }

    #[test]
    fn inputs_are_parsed_when_deserialized_and_unknown_fields_are_rejected() {
        let user: NewUser =
            serde_json::from_str(r#"{"name":"Ada","email":"ADA@example.com"}"#).unwrap();
        assert_eq!(user.email.as_str(), "ada@example.com");
        assert!(serde_json::from_str::<NewUser>(r#"{"name":"Ada","email":"nope"}"#).is_err());
        assert!(
            serde_json::from_str::<NewUser>(r#"{"name":"Ada","email":"a@b","admin":true}"#)
                .is_err()
        );
        let order: Result<NewOrder, _> =
            serde_json::from_str(r#"{"user_id":1,"product_id":2,"quantity":0}"#);
        assert!(order.is_err());
        let update: UpdateUser = serde_json::from_str(r#"{"name":"Grace"}"#).unwrap();
        assert_eq!(update.email, None);
    }
}
