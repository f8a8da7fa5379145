//! How users are stored: read by id, searched by name or email, created,
//! changed and deleted. The email is unique; a user with orders is kept.

use super::{MAX_PAGE, MAX_SEARCH_LEN, Store, mysql_insert_id, now_ms, with_pool};
use crate::StoreError;
use crate::model::{Entity, NewUser, UpdateUser, User};
use crate::sql::escape_like;

/// A text as searches compare it: each character's Unicode lowercase,
/// folded here rather than by the engine, whose `LOWER` differs (SQLite's
/// folds ASCII only). Character by character, so that a part of a word
/// folds as it does inside the word (`str::to_lowercase` turns a final
/// Greek capital sigma into ς, which a search for the whole word's other
/// spellings would then miss).
pub(crate) fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

impl Store {
    /// The user with `id`, if any.
    pub async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.delay_read(Entity::User).await;
        self.fetch_user(id).await
    }

    async fn fetch_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.row_by_id("user", |sql| sql.user_by_id, id).await
    }

    /// Users whose name or email contains `query`, ignoring case, in id
    /// order, at most `limit` (capped at [`MAX_PAGE`]).
    ///
    /// The text matches literally: `%` and `_` are not wildcards, and the
    /// text reaches the database only as a bind parameter. An empty query
    /// finds nobody. Case is folded in Rust ([`fold`]) on both sides, so
    /// "émile" finds "ÉMILE" on every engine.
    pub async fn search_users(&self, query: &str, limit: u32) -> Result<Vec<User>, StoreError> {
        let query = query.trim();
        if query.chars().count() > MAX_SEARCH_LEN {
            return Err(StoreError::invalid(format!(
                "search text longer than {MAX_SEARCH_LEN} characters"
            )));
        }
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let pattern = format!("%{}%", escape_like(&fold(query)));
        let limit = i64::from(limit.min(MAX_PAGE));
        self.delay_read(Entity::User).await;
        self.call("search_users", async {
            with_pool!(self, |pool, sql| sqlx::query_as::<_, User>(
                sql.search_users
            )
            .bind(pattern.as_str())
            .bind(pattern.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await)
        })
        .await
    }

    /// Creates a user. An email that another user has is a
    /// [`StoreError::Conflict`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let created_at = now_ms();
        let (name, email) = (new.name.as_str(), new.email.as_str());
        let (name_folded, email_folded) = (fold(name), fold(email));
        let id = self
            .call("create_user", async {
                with_pool!(self, |pool, sql|
                    returning: sqlx::query_scalar(sql.insert_user_returning_id)
                        .bind(name)
                        .bind(email)
                        .bind(created_at)
                        .bind(name_folded.as_str())
                        .bind(email_folded.as_str())
                        .fetch_one(pool)
                        .await,
                    mysql: sqlx::query(sql.insert_user)
                        .bind(name)
                        .bind(email)
                        .bind(created_at)
                        .bind(name_folded.as_str())
                        .bind(email_folded.as_str())
                        .execute(pool)
                        .await
                        .and_then(mysql_insert_id),
                )
            })
            .await
            .map_err(duplicate_email)?;
        Ok(User {
            id,
            name: name.to_owned(),
            email: email.to_owned(),
            created_at,
        })
    }

    /// Changes the given fields of user `id`; `None` when there is no such
    /// user. An email that another user has is a [`StoreError::Conflict`].
    pub async fn update_user(
        &self,
        id: i64,
        changes: UpdateUser,
    ) -> Result<Option<User>, StoreError> {
        let name = changes.name.as_ref().map(|name| name.as_str());
        let email = changes.email.as_ref().map(|email| email.as_str());
        let (name_folded, email_folded) = (name.map(fold), email.map(fold));
        if name.is_some() || email.is_some() {
            // UPDATE then SELECT rather than RETURNING, which MySQL lacks;
            // rows_affected cannot tell "no such user" either, as MySQL
            // counts only rows whose values changed.
            self.call("update_user", async {
                with_pool!(self, |pool, sql| sqlx::query(sql.update_user)
                    .bind(name)
                    .bind(name_folded.as_deref())
                    .bind(email)
                    .bind(email_folded.as_deref())
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop))
            })
            .await
            .map_err(duplicate_email)?;
        }
        self.fetch_user(id).await
    }

    /// Deletes user `id`; `false` when there was no such user. A user who
    /// has orders is kept and the answer is a [`StoreError::Conflict`]:
    /// orders are history and are not deleted along with their user.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self
            .call("delete_user", async {
                with_pool!(self, |pool, sql| sqlx::query(sql.delete_user)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected()))
            })
            .await
            .map_err(|err| match err {
                StoreError::Conflict { .. } => {
                    StoreError::conflict(format!("user {id} has orders and cannot be deleted"))
                }
                other => other,
            })?;
        Ok(deleted > 0)
    }
}

/// A unique violation on users can only be the email (the id is never
/// given), so say that in words a client can read.
fn duplicate_email(err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict { .. } => {
            StoreError::conflict("a user with this email already exists")
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folding_is_each_characters_lowercase() {
        assert_eq!(fold("ÉMILE Zola"), "émile zola");
        // A final capital sigma folds as any other: a search for the start
        // of the word finds the word.
        assert_eq!(fold("ΟΔΥΣΣΕΥΣ"), "οδυσσευσ");
        assert!(fold("ΟΔΥΣΣΕΥΣ").contains(&fold("ΟΔΥΣ")));
    }
}
