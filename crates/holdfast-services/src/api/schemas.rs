//! The OpenAPI shapes of what the users, products and orders endpoints
//! send and take, and the patterns that state exactly which texts the
//! services' parsers accept (the ingress uses them too). The handlers
//! serialize the store's own types; these mirror them for the document
//! only (the store knows nothing of OpenAPI), so a change to a row type
//! or a parsing rule is made here too. The fuzzer (`.ci/check-openapi`)
//! holds the patterns to the parsers.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use crate::problem::listener_doc::required;

/// The characters Rust's `str::trim` removes (Unicode `White_Space`), as
/// the body of an ECMA-262 character class.
const WHITE_SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// The characters `char::is_control` refuses (Unicode `Cc`), likewise.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// The pattern of a text that is trimmed and then must have from `min`
/// (either 0 or 1) to `max` characters, none of them a control character:
/// what the user name, the search text, the city and the location take.
/// Spaces around it are allowed, as the parsers trim them.
pub(crate) fn trimmed_text_pattern(min: usize, max: usize) -> String {
    debug_assert!(min <= 1 && max >= 2);
    let space = format!("[{WHITE_SPACE}]*");
    let edge = format!("[^{CONTROL}{WHITE_SPACE}]");
    let inner = format!("[^{CONTROL}]");
    let text = format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2);
    let text = if min == 0 {
        format!("(?:{text})?")
    } else {
        text
    };
    format!("^{space}{text}{space}$")
}

/// The longest email address accepted, in characters once trimmed (the
/// store's `Email::MAX_LEN`).
pub(crate) const MAX_EMAIL_CHARS: usize = holdfast_store::Email::MAX_LEN;

/// An email address as the store's `Email::parse` takes it: trimmed, one
/// `@` with text on both sides, no spaces or control characters, at most
/// [`MAX_EMAIL_CHARS`] characters. (It counts them once lower-cased: an
/// address at the limit that holds a letter whose lower case is two
/// characters, such as `İ`, passes the pattern and is refused, which no
/// pattern can see.)
pub(crate) fn email_schema(nullable: bool) -> Object {
    let space = format!("[{WHITE_SPACE}]*");
    let part = format!("[^{CONTROL}{WHITE_SPACE}@]+");
    // Longer than the limit once trimmed: what `not` excludes, as a
    // pattern's own repetition cannot count across the two parts.
    let edge = format!("[^{WHITE_SPACE}]");
    let too_long = format!(
        r"^{space}{edge}[\s\S]{{{},}}{edge}{space}$",
        MAX_EMAIL_CHARS - 1
    );
    let mut schema = text_schema(
        nullable,
        &format!("^{space}{part}@{part}{space}$"),
        "An email address, `local@domain`: at most 254 characters once trimmed, no spaces or control characters; stored lower-cased",
    );
    // A string, so that `null` (a change that keeps the email) is not
    // excluded with it.
    let not = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(too_long))
        .build();
    schema
        .extensions
        .get_or_insert_with(Default::default)
        // utoipa's schema model has no `not`; an extension serializes
        // beside the other keywords, as JSON Schema has it.
        .insert(
            "not".to_owned(),
            serde_json::to_value(not).expect("a schema serializes"),
        );
    schema
}

/// A user name as the store's `UserName::parse` takes it.
pub(crate) fn user_name_schema(nullable: bool) -> Object {
    text_schema(
        nullable,
        &trimmed_text_pattern(1, holdfast_store::UserName::MAX_LEN),
        "1 to 100 characters once trimmed, no control characters",
    )
}

/// A string (or, when `nullable`, also `null`) matching `pattern`.
pub(crate) fn text_schema(nullable: bool, pattern: &str, description: &str) -> Object {
    let schema_type = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

fn new_user_name() -> Object {
    user_name_schema(false)
}

fn new_user_email() -> Object {
    email_schema(false)
}

fn changed_user_name() -> Object {
    user_name_schema(true)
}

fn changed_user_email() -> Object {
    email_schema(true)
}

/// A user as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct UserSchema {
    /// Primary key.
    #[schema(minimum = 1)]
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
    #[schema(minimum = 1)]
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
#[serde(deny_unknown_fields)]
pub struct NewUserSchema {
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(schema_with = new_user_name)]
    pub name: String,
    /// `local@domain`, at most 254 characters once trimmed; must be unused.
    #[schema(schema_with = new_user_email)]
    pub email: String,
}

/// Fields of a user to change; absent (or `null`) fields keep their
/// value, unknown fields are refused.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserSchema {
    /// A new name.
    #[schema(schema_with = changed_user_name, required = false)]
    pub name: Option<String>,
    /// A new email address; must be unused.
    #[schema(schema_with = changed_user_email, required = false)]
    pub email: Option<String>,
}

/// An order as returned (the store's row).
#[derive(Serialize, ToSchema)]
pub struct OrderSchema {
    /// Primary key.
    #[schema(minimum = 1)]
    pub id: i64,
    /// Who ordered.
    pub user_id: i64,
    /// What was ordered.
    pub product_id: i64,
    /// How many units.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
    /// Unit price at the time of the order times quantity, in cents.
    pub total_cents: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// An order to place; unknown fields are refused.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderSchema {
    /// Who orders; must be known to the users endpoint (else 422
    /// `unknown_user`).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub user_id: i64,
    /// What is ordered; must exist (else 422 `unknown_product`).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub product_id: i64,
    /// 1 to 1000 units.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

/// Where a read through the cache was answered from.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheSource {
    /// Redis.
    Cache,
    /// The database (a miss, or the cache bypassed).
    Db,
    /// An expired copy, while the database is unavailable.
    Stale,
}

/// One user read through the cache.
#[derive(Serialize, ToSchema)]
pub struct CachedUserSchema {
    /// Where it was answered from.
    pub source: CacheSource,
    /// The user.
    pub data: UserSchema,
}

/// One product read through the cache.
#[derive(Serialize, ToSchema)]
pub struct CachedProductSchema {
    /// Where it was answered from.
    pub source: CacheSource,
    /// The product.
    pub data: ProductSchema,
}

/// A page of products read through the cache.
#[derive(Serialize, ToSchema)]
pub struct CachedProductPageSchema {
    /// Where it was answered from.
    pub source: CacheSource,
    /// The products, in id order.
    pub data: Vec<ProductSchema>,
}

/// The `X-Cache` header of a read through the cache: `HIT`, `MISS`,
/// `STALE`, or `BYPASS` (Redis down or switched off).
pub(crate) fn x_cache_header() -> Header {
    let values = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["HIT", "MISS", "STALE", "BYPASS"]));
    required(
        HeaderBuilder::new()
            .schema(Some(values))
            .description(Some(
                "Where the read was answered from: `HIT` (Redis), `MISS` (the database, then cached), `STALE` (an expired copy while the database is unavailable), `BYPASS` (the database, Redis down or off)",
            ))
            .build(),
    )
}

/// The document's 201 of a creation: `T` as stored, and `Location`
/// naming where it can be read.
pub(super) struct Created<T>(PhantomData<T>);

impl<T: ToSchema> IntoResponses for Created<T> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let created = ResponseBuilder::new()
            .description("Created, as stored; `Location` names where it can be read")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(T::name())))
                    .build(),
            )
            .header("Location", location_header())
            .build();
        BTreeMap::from([("201".to_owned(), created.into())])
    }
}

/// `Location`: the path where what was created (or queued) can be read.
pub(crate) fn location_header() -> Header {
    required(
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("The path where it can be read"))
            .build(),
    )
}
