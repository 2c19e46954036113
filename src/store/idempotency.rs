//! Idempotency keys: the key, the fingerprint of its request and the response given, read and
//! written by the ledger writer, the record in the same transaction as the effect (see
//! `ledger::store`). Expired keys are deleted by the daily `session-purge` job
//! ([`purge_expired`]), and by the writer when one is used again.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::accounts::UserId;

/// A response as first given, replayed for repeats of the same key and request.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub fingerprint: Vec<u8>,
    pub response: StoredResponse,
}

pub type KeyId = (UserId, String);

/// Deletes up to `limit` keys recorded at or before `expired_before` (those the writer no longer
/// replays); returns how many. The rows were inserted in time order, so the BRIN index on
/// `created_at` finds them in the table's oldest pages; `SKIP LOCKED` lets concurrent runs
/// share the work. A key the writer deletes and records again meanwhile is newer, and stays.
pub async fn purge_expired(conn: &mut PgConnection, expired_before: DateTime<Utc>, limit: i64) -> sqlx::Result<u64> {
    let purged = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (user_id, key) IN (
             SELECT user_id, key FROM idempotency_keys WHERE created_at <= $1
              LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(expired_before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(purged.rows_affected())
}
