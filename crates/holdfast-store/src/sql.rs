//! The SQL text of every store call, written once.
//!
//! Each statement is written with `?` placeholders, which MySQL and SQLite
//! take as they are. PostgreSQL wants `$1, $2, …`, so a second copy is
//! derived once, at first use, by numbering the placeholders. Binds are in
//! the same order for every engine, and no value is ever formatted into the
//! text: everything from outside arrives as a bind parameter.
//!
//! `LIKE … ESCAPE '!'` rather than a backslash: a backslash literal is
//! spelled differently on MySQL (where it escapes inside strings) than on
//! the other two, while `'!'` means the same everywhere.

use std::sync::LazyLock;

use crate::Backend;

macro_rules! statements {
    ($($(#[doc = $doc:literal])* $name:ident = $sql:literal;)*) => {
        /// One engine's text for every statement.
        pub(crate) struct Statements {
            $($(#[doc = $doc])* pub(crate) $name: &'static str,)*
        }

        /// The text with `?` placeholders, for MySQL and SQLite.
        static QUESTION_MARKS: Statements = Statements { $($name: $sql,)* };

        /// The text with `$n` placeholders, for PostgreSQL. Leaked once, at
        /// first use: a fixed, small set of strings that lives as long as
        /// the process, which lets sqlx take them as `&'static str`.
        static NUMBERED: LazyLock<Statements> = LazyLock::new(|| Statements {
            $($name: Box::leak(number_placeholders($sql).into_boxed_str()),)*
        });
    };
}

statements! {
    /// Health check.
    ping = "SELECT 1";
    /// One user by id.
    user_by_id = "SELECT id, name, email, created_at FROM users WHERE id = ?";
    /// Users whose case-folded name or email matches a LIKE pattern
    /// (bound twice), in id order, limited.
    search_users = "SELECT id, name, email, created_at FROM users \
        WHERE name_folded LIKE ? ESCAPE '!' OR email_folded LIKE ? ESCAPE '!' \
        ORDER BY id LIMIT ?";
    /// Insert a user with its folded copies and return its id
    /// (PostgreSQL, SQLite).
    insert_user_returning_id = "INSERT INTO users (name, email, created_at, name_folded, email_folded) \
        VALUES (?, ?, ?, ?, ?) RETURNING id";
    /// Insert a user (MySQL: the id comes from LAST_INSERT_ID).
    insert_user = "INSERT INTO users (name, email, created_at, name_folded, email_folded) \
        VALUES (?, ?, ?, ?, ?)";
    /// Change the fields that are not NULL, each with its folded copy.
    update_user = "UPDATE users SET name = COALESCE(?, name), name_folded = COALESCE(?, name_folded), \
        email = COALESCE(?, email), email_folded = COALESCE(?, email_folded) WHERE id = ?";
    /// Users written before the folded copies existed (a batch).
    users_unfolded = "SELECT id, name, email FROM users \
        WHERE id > ? AND ((name_folded = '' AND name <> '') OR (email_folded = '' AND email <> '')) \
        ORDER BY id LIMIT ?";
    /// Sets one user's folded copies.
    set_user_folded = "UPDATE users SET name_folded = ?, email_folded = ? WHERE id = ?";
    /// Delete one user.
    delete_user = "DELETE FROM users WHERE id = ?";
    /// Whether a user exists (0 or 1).
    count_user = "SELECT COUNT(*) FROM users WHERE id = ?";
    /// A page of products in id order.
    products_page = "SELECT id, name, description, price_cents, stock, updated_at FROM products \
        ORDER BY id LIMIT ? OFFSET ?";
    /// One product by id.
    product_by_id = "SELECT id, name, description, price_cents, stock, updated_at FROM products WHERE id = ?";
    /// Insert an order priced from the product row, in one statement, so
    /// the total uses the price the database has at that instant; no row is
    /// inserted when the user or the product is missing. Binds: quantity,
    /// quantity, created_at, user id, product id. (PostgreSQL, SQLite.)
    insert_order_returning = "INSERT INTO orders (user_id, product_id, quantity, total_cents, created_at) \
        SELECT u.id, p.id, ?, p.price_cents * ?, ? FROM users u, products p WHERE u.id = ? AND p.id = ? \
        RETURNING id, user_id, product_id, quantity, total_cents, created_at";
    /// The same for MySQL, which has no RETURNING.
    insert_order = "INSERT INTO orders (user_id, product_id, quantity, total_cents, created_at) \
        SELECT u.id, p.id, ?, p.price_cents * ?, ? FROM users u, products p WHERE u.id = ? AND p.id = ?";
    /// One order by id.
    order_by_id = "SELECT id, user_id, product_id, quantity, total_cents, created_at FROM orders WHERE id = ?";
    /// Row counts for seeding and health.
    count_users = "SELECT COUNT(*) FROM users";
    /// Row counts for seeding and health.
    count_products = "SELECT COUNT(*) FROM products";
    /// Row counts for seeding and health.
    count_orders = "SELECT COUNT(*) FROM orders";
    /// Moves the users id sequence past seeded ids (PostgreSQL only).
    reset_users_sequence = "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users))";
    /// Moves the products id sequence past seeded ids (PostgreSQL only).
    reset_products_sequence = "SELECT setval(pg_get_serial_sequence('products', 'id'), (SELECT MAX(id) FROM products))";
    /// Column names of a table in order (SQLite).
    sqlite_columns = "SELECT name FROM pragma_table_info(?) ORDER BY cid";
    /// Column names of a table in order (PostgreSQL, current schema).
    postgres_columns = "SELECT column_name::TEXT FROM information_schema.columns \
        WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position";
    /// Column names of a table in order (MySQL, current database).
    mysql_columns = "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
        WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position";
}

/// The statements in the placeholder style of `backend`.
pub(crate) fn statements(backend: Backend) -> &'static Statements {
    match backend {
        Backend::Postgres => &NUMBERED,
        Backend::Sqlite | Backend::MySql => &QUESTION_MARKS,
    }
}

/// Rewrites `?` placeholders as `$1, $2, …`, leaving `?` inside quoted
/// literals and identifiers alone.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(open), _) if c == open => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                out.push('$');
                out.push_str(&next.to_string());
                next += 1;
            }
            _ => out.push(c),
        }
    }
    out
}

/// Escapes `%`, `_` and the escape character itself so that `text` matches
/// literally inside a `LIKE … ESCAPE '!'` pattern.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_outside_quotes() {
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\" FROM t WHERE a = ? AND b LIKE ? ESCAPE '!'"),
            "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b LIKE $2 ESCAPE '!'"
        );
    }

    #[test]
    fn every_postgres_statement_has_as_many_placeholders_as_the_original() {
        let pg = statements(Backend::Postgres);
        let mysql = statements(Backend::MySql);
        assert_eq!(pg.search_users.matches('$').count(), 3);
        assert_eq!(mysql.search_users.matches('?').count(), 3);
        assert_eq!(pg.insert_order_returning.matches('$').count(), 5);
    }

    #[test]
    fn like_wildcards_and_the_escape_character_are_escaped() {
        assert_eq!(escape_like("50%_off!"), "50!%!_off!!");
        assert_eq!(escape_like("o'brien"), "o'brien");
    }
}
