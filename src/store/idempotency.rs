//! Idempotency keys: the key, the fingerprint of its request and the response given, written
//! by the ledger writer in the same transaction as the effect (see `ledger::store`); read here
//! for repeats that arrive after the first request finished.

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

/// The live record for a key (created after `since`), without locking: the fast path for
/// repeats that arrive after the first request finished.
pub async fn find(
    conn: &mut PgConnection,
    user_id: UserId,
    key: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Option<KeyRecord>> {
    let row: Option<(Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT fingerprint, status_code, body FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at > $3",
    )
    .bind(user_id)
    .bind(key)
    .bind(since)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(fingerprint, status, body)| KeyRecord {
        fingerprint,
        response: StoredResponse { status: status as u16, body },
    }))
}
