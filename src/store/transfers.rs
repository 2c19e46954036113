//! Reading transfers. They are created and resolved only by the ledger writer.

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use crate::domain::accounts::UserId;
use crate::domain::ids::TransferId;
use crate::domain::transfers::{Transfer, TransferStatus};

/// Rows as JSON, decoded by the one decoder the ledger writer uses too.
const TRANSFER_JSON: &str = "to_jsonb(t)";

fn transfer_from_row(row: &PgRow) -> sqlx::Result<Transfer> {
    let Json(transfer): Json<Transfer> = row.try_get(0)?;
    Ok(transfer)
}

/// The transfer if the user sent or received it.
pub async fn get_for_party(conn: &mut PgConnection, user_id: UserId, id: TransferId) -> sqlx::Result<Option<Transfer>> {
    let sql =
        format!("SELECT {TRANSFER_JSON} FROM transfers t WHERE id = $1 AND (from_user_id = $2 OR to_user_id = $2)");
    let row = sqlx::query(&sql).bind(id).bind(user_id).fetch_optional(conn).await?;
    row.as_ref().map(transfer_from_row).transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
    Both,
}

/// The user's transfers, newest first, with ids below `before_id`.
pub async fn list(
    conn: &mut PgConnection,
    user_id: UserId,
    direction: Direction,
    status: Option<TransferStatus>,
    before_id: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Transfer>> {
    let party = match direction {
        Direction::Incoming => "to_user_id = $1",
        Direction::Outgoing => "from_user_id = $1",
        Direction::Both => "(from_user_id = $1 OR to_user_id = $1)",
    };
    let sql = format!(
        "SELECT {TRANSFER_JSON} FROM transfers t
          WHERE {party} AND ($2::text IS NULL OR status = $2) AND ($3::int8 IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(user_id)
        .bind(status.map(TransferStatus::as_str))
        .bind(before_id)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(transfer_from_row).collect()
}

/// A pending transfer whose receiver is due a reminder.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueReminder {
    pub id: TransferId,
    pub from_user_id: UserId,
    pub to_user_id: UserId,
    pub amount: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Locks up to `limit` pending transfers not yet reminded of that expire after `now` and at
/// most `lead` after it, soonest first, skipping rows other transactions hold (the partial
/// index `transfers_pending_reminder` holds exactly the candidates).
pub async fn lock_due_reminders(
    conn: &mut PgConnection,
    now: chrono::DateTime<chrono::Utc>,
    lead: chrono::Duration,
    limit: i64,
) -> sqlx::Result<Vec<DueReminder>> {
    sqlx::query_as(
        "SELECT id, from_user_id, to_user_id, amount, expires_at FROM transfers
          WHERE status = 'pending' AND reminded_at IS NULL AND expires_at > $1 AND expires_at <= $2
          ORDER BY expires_at, id
          LIMIT $3
          FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(now + lead)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks transfers (locked by the caller) as reminded at `now`.
pub async fn mark_reminded(
    conn: &mut PgConnection,
    ids: &[i64],
    now: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<u64> {
    Ok(sqlx::query("UPDATE transfers SET reminded_at = $2 WHERE id = ANY($1) AND reminded_at IS NULL")
        .bind(ids)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected())
}
