//! Reading transfers. They are created and resolved only by the ledger writer.

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use crate::domain::accounts::UserId;
use crate::domain::transfers::{Transfer, TransferStatus};

/// Rows as JSON, decoded by the one decoder the ledger writer uses too.
const TRANSFER_JSON: &str = "to_jsonb(t)";

fn transfer_from_row(row: &PgRow) -> sqlx::Result<Transfer> {
    let Json(transfer): Json<Transfer> = row.try_get(0)?;
    Ok(transfer)
}

/// The transfer if the user sent or received it.
pub async fn get_for_party(conn: &mut PgConnection, user_id: UserId, id: i64) -> sqlx::Result<Option<Transfer>> {
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
