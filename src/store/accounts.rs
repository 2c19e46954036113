//! Reading and opening accounts. Balances change only through the ledger writer.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::accounts::{Account, AccountId, Product, UserId};

/// Rows are read as `to_jsonb(a)` and decoded by serde into [`Account`]: one decoder for
/// every reader of accounts.
pub type AccountRow = Account;

/// The user's accounts, main first, then by id.
pub async fn list_for_user(conn: &mut PgConnection, user_id: UserId) -> sqlx::Result<Vec<Account>> {
    let rows: Vec<Json<Account>> =
        sqlx::query_scalar("SELECT to_jsonb(a) FROM accounts a WHERE user_id = $1 ORDER BY kind <> 'main', id")
            .bind(user_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|Json(account)| account).collect())
}

/// The account if the user owns it; someone else's account is `None`, like a missing one.
pub async fn get_owned(
    conn: &mut PgConnection,
    user_id: UserId,
    account_id: AccountId,
) -> sqlx::Result<Option<Account>> {
    let row: Option<Json<Account>> =
        sqlx::query_scalar("SELECT to_jsonb(a) FROM accounts a WHERE id = $1 AND user_id = $2")
            .bind(account_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|Json(account)| account))
}

pub async fn insert_main(conn: &mut PgConnection, user_id: UserId, now: DateTime<Utc>) -> sqlx::Result<AccountId> {
    sqlx::query_scalar("INSERT INTO accounts (user_id, kind, opened_at) VALUES ($1, 'main', $2) RETURNING id")
        .bind(user_id)
        .bind(now)
        .fetch_one(conn)
        .await
}

pub async fn insert_savings(
    conn: &mut PgConnection,
    user_id: UserId,
    product: Product,
    installment_amount: Option<i64>,
    now: DateTime<Utc>,
) -> sqlx::Result<Account> {
    let Json(account): Json<Account> = sqlx::query_scalar(
        "INSERT INTO accounts AS a (user_id, kind, product, installment_amount, interest_rate_bp, opened_at)
         VALUES ($1, 'savings', $2, $3, $4, $5) RETURNING to_jsonb(a)",
    )
    .bind(user_id)
    .bind(product.as_str())
    .bind(installment_amount)
    .bind(product.interest_rate_bp())
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(account)
}
