//! Reading and opening accounts. Balances change only through the ledger writer.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::domain::accounts::{Account, AccountId, AccountKind, AccountStatus, Product, UserId};

/// The columns `account_from_row` reads, in a form to paste into a SELECT.
pub const ACCOUNT_COLUMNS: &str = "id, user_id, kind, product, status, installment_amount, interest_rate_bp, \
     opened_at, closed_at, debits_posted, credits_posted, debits_pending, credits_pending";

fn decode_error(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: format!("unexpected value {value:?}").into() }
}

pub fn account_from_row(row: &PgRow) -> sqlx::Result<Account> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let product: Option<String> = row.try_get("product")?;
    let product = match product {
        None => None,
        Some(text) => Some(Product::parse(&text).ok_or_else(|| decode_error("product", &text))?),
    };
    Ok(Account {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| decode_error("kind", &kind))?,
        product,
        status: AccountStatus::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        installment_amount: row.try_get("installment_amount")?,
        interest_rate_bp: row.try_get("interest_rate_bp")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        debits_posted: row.try_get("debits_posted")?,
        credits_posted: row.try_get("credits_posted")?,
        debits_pending: row.try_get("debits_pending")?,
        credits_pending: row.try_get("credits_pending")?,
    })
}

/// The user's accounts, main first, then by id.
pub async fn list_for_user(conn: &mut PgConnection, user_id: UserId) -> sqlx::Result<Vec<Account>> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = $1 ORDER BY kind <> 'main', id"
    );
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(conn).await?;
    rows.iter().map(account_from_row).collect()
}

/// The account if the user owns it; someone else's account is `None`, like a missing one.
pub async fn get_owned(conn: &mut PgConnection, user_id: UserId, account_id: AccountId) -> sqlx::Result<Option<Account>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 AND user_id = $2");
    let row = sqlx::query(&sql).bind(account_id).bind(user_id).fetch_optional(conn).await?;
    row.as_ref().map(account_from_row).transpose()
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
    let sql = format!(
        "INSERT INTO accounts (user_id, kind, product, installment_amount, interest_rate_bp, opened_at)
         VALUES ($1, 'savings', $2, $3, $4, $5) RETURNING {ACCOUNT_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(product.as_str())
        .bind(installment_amount)
        .bind(product.interest_rate_bp())
        .bind(now)
        .fetch_one(conn)
        .await?;
    account_from_row(&row)
}
