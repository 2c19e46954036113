//! Users: sign-up (with the main account, in one transaction), look-ups, profile changes.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::accounts::{AccountId, UserId};
use crate::domain::social::SettlementRequestsFrom;
use crate::store::accounts;
use crate::store::tx::violated_constraint;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub main_account_id: AccountId,
    pub transfer_mode: String,
    /// `everyone` or `friends` (`domain::social::SettlementRequestsFrom`).
    pub settlement_requests_from: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    #[error("name taken")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn map_name_taken(error: sqlx::Error) -> UserStoreError {
    if violated_constraint(&error) == Some("users_name_key") {
        UserStoreError::NameTaken
    } else {
        UserStoreError::Database(error)
    }
}

const USER_SELECT: &str = "SELECT u.id, u.name, a.id AS main_account_id, u.transfer_mode, u.settlement_requests_from
     FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'main'";

/// Creates the user and their main account together: a user never exists without one.
pub async fn create(
    pool: &PgPool,
    name: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<User, UserStoreError> {
    let mut tx = pool.begin().await?;
    let id: UserId =
        sqlx::query_scalar("INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(name)
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_name_taken)?;
    let main_account_id = accounts::insert_main(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(User {
        id,
        name: name.to_owned(),
        main_account_id,
        transfer_mode: "immediate".to_owned(),
        settlement_requests_from: SettlementRequestsFrom::Everyone.as_str().to_owned(),
    })
}

pub async fn find_by_name(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("{USER_SELECT} WHERE u.name = $1")).bind(name).fetch_optional(conn).await
}

pub async fn find_by_id(conn: &mut PgConnection, id: UserId) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("{USER_SELECT} WHERE u.id = $1")).bind(id).fetch_optional(conn).await
}

/// The stored password hash for a name, for logging in.
pub async fn credentials(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<(UserId, String)>> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE name = $1").bind(name).fetch_optional(conn).await
}

/// Changes the name, transfer mode and/or who may ask for payment; `None` leaves a field as
/// it is.
pub async fn update_profile(
    pool: &PgPool,
    id: UserId,
    name: Option<&str>,
    transfer_mode: Option<&str>,
    settlement_requests_from: Option<SettlementRequestsFrom>,
) -> Result<Option<User>, UserStoreError> {
    let mut conn = pool.acquire().await?;
    let updated = sqlx::query(
        "UPDATE users SET name = COALESCE($2, name), transfer_mode = COALESCE($3, transfer_mode),
                          settlement_requests_from = COALESCE($4, settlement_requests_from)
          WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(transfer_mode)
    .bind(settlement_requests_from.map(SettlementRequestsFrom::as_str))
    .execute(&mut *conn)
    .await
    .map_err(map_name_taken)?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(find_by_id(&mut conn, id).await?)
}

/// Today's used top-up amount for the user.
pub async fn daily_charge_used(
    conn: &mut PgConnection,
    id: UserId,
    business_date: chrono::NaiveDate,
) -> sqlx::Result<i64> {
    let used: Option<i64> =
        sqlx::query_scalar("SELECT used FROM daily_charges WHERE user_id = $1 AND business_date = $2")
            .bind(id)
            .bind(business_date)
            .fetch_optional(conn)
            .await?;
    Ok(used.unwrap_or(0))
}
