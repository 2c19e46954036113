//! Friends and blocks (plain transactions: no money moves). Who may be asked to pay a split
//! bill is checked by the creation's own statement (`crate::store::settlements`), and a
//! transfer's block by the ledger batch itself, in its snapshot (`crate::ledger::store`).
//!
//! A block or a friend removed while a split bill to that user is already past these checks
//! does not stop it: the check and the request are not one transaction. That race is
//! accepted; everything that arrives after the block has committed is refused.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::accounts::{AccountId, UserId};

/// Another user as one of the caller's lists shows them, with their current name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Contact {
    pub user_id: UserId,
    pub name: String,
    pub main_account_id: AccountId,
}

/// One of a user's lists of other users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `friends (user_id, friend_id)`: one-way contacts.
    Friends,
    /// `blocks (blocker_id, blocked_id)`.
    Blocks,
}

impl List {
    /// The table, the owner's column and the listed user's column.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            List::Friends => ("friends", "user_id", "friend_id"),
            List::Blocks => ("blocks", "blocker_id", "blocked_id"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No user with that name or id.
    #[error("no such user")]
    UnknownUser,
    /// The owner named themselves.
    #[error("a user cannot list themselves")]
    Yourself,
    /// The list already holds `0` users.
    #[error("the list is full ({0} users)")]
    Full(u32),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const CONTACT_SELECT: &str =
    "SELECT u.id AS user_id, u.name, a.id AS main_account_id FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'main'";

/// Adds `other` to `owner`'s `list`, at most `max` entries. Answers the entry and whether it
/// is new (adding someone already listed changes nothing).
pub async fn add(
    pool: &PgPool,
    list: List,
    owner: UserId,
    other: UserId,
    max: u32,
    now: DateTime<Utc>,
) -> Result<(Contact, bool), ListError> {
    if owner == other {
        return Err(ListError::Yourself);
    }
    let (table, owner_column, other_column) = list.columns();
    let mut tx = pool.begin().await?;
    // One change at a time to a user's lists, so that concurrent adds cannot pass the bound
    // together. NO KEY UPDATE: foreign keys to the user (FOR KEY SHARE) are not held up.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(owner).execute(&mut *tx).await?;
    let contact: Contact = sqlx::query_as(&format!("{CONTACT_SELECT} WHERE u.id = $1"))
        .bind(other)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ListError::UnknownUser)?;
    let (listed, count): (bool, i64) = sqlx::query_as(&format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE {owner_column} = $1 AND {other_column} = $2),
                (SELECT count(*) FROM {table} WHERE {owner_column} = $1)"
    ))
    .bind(owner)
    .bind(other)
    .fetch_one(&mut *tx)
    .await?;
    if listed {
        return Ok((contact, false));
    }
    if count >= i64::from(max) {
        return Err(ListError::Full(max));
    }
    sqlx::query(&format!("INSERT INTO {table} ({owner_column}, {other_column}, created_at) VALUES ($1, $2, $3)"))
        .bind(owner)
        .bind(other)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((contact, true))
}

/// The users on `owner`'s `list`, by name (the list is bounded, so it comes whole).
pub async fn list(conn: &mut PgConnection, list: List, owner: UserId) -> sqlx::Result<Vec<Contact>> {
    let (table, owner_column, other_column) = list.columns();
    sqlx::query_as(&format!(
        "{CONTACT_SELECT} JOIN {table} l ON l.{other_column} = u.id WHERE l.{owner_column} = $1 ORDER BY u.name, u.id"
    ))
    .bind(owner)
    .fetch_all(conn)
    .await
}

/// Takes `other` off `owner`'s `list`; false when they were not on it.
pub async fn remove(conn: &mut PgConnection, list: List, owner: UserId, other: UserId) -> sqlx::Result<bool> {
    let (table, owner_column, other_column) = list.columns();
    let removed = sqlx::query(&format!("DELETE FROM {table} WHERE {owner_column} = $1 AND {other_column} = $2"))
        .bind(owner)
        .bind(other)
        .execute(conn)
        .await?;
    Ok(removed.rows_affected() > 0)
}

/// For each (blocker, blocked) pair, in order, whether that block exists.
pub async fn blocked(conn: &mut PgConnection, pairs: &[(UserId, UserId)]) -> sqlx::Result<Vec<bool>> {
    let blockers: Vec<UserId> = pairs.iter().map(|(blocker, _)| *blocker).collect();
    let blocked: Vec<UserId> = pairs.iter().map(|(_, blocked)| *blocked).collect();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.blocker AND b.blocked_id = p.blocked)
           FROM UNNEST($1::int8[], $2::int8[]) WITH ORDINALITY AS p(blocker, blocked, position)
          ORDER BY p.position",
    )
    .bind(&blockers)
    .bind(&blocked)
    .fetch_all(conn)
    .await
}
