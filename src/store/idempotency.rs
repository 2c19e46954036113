//! Idempotency keys: the key, the fingerprint of its request and the response given, written
//! by the ledger writer in the same transaction as the effect.

use std::collections::HashMap;

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
pub async fn find(conn: &mut PgConnection, user_id: UserId, key: &str, since: DateTime<Utc>) -> sqlx::Result<Option<KeyRecord>> {
    let row: Option<(Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT fingerprint, status_code, body FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at > $3",
    )
    .bind(user_id)
    .bind(key)
    .bind(since)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(fingerprint, status, body)| KeyRecord { fingerprint, response: StoredResponse { status: status as u16, body } }))
}

/// Inside a batch: forgets expired records of these keys, then locks and loads the live ones.
pub async fn lock(conn: &mut PgConnection, keys: &[KeyId], since: DateTime<Utc>) -> sqlx::Result<HashMap<KeyId, KeyRecord>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let users: Vec<i64> = keys.iter().map(|(user, _)| *user).collect();
    let names: Vec<&str> = keys.iter().map(|(_, key)| key.as_str()).collect();
    sqlx::query(
        "DELETE FROM idempotency_keys
          WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[])) AND created_at <= $3",
    )
    .bind(&users)
    .bind(&names)
    .bind(since)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(i64, String, Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT user_id, key, fingerprint, status_code, body FROM idempotency_keys
          WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[]))
          ORDER BY user_id, key FOR UPDATE",
    )
    .bind(&users)
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, key, fingerprint, status, body)| {
            ((user, key), KeyRecord { fingerprint, response: StoredResponse { status: status as u16, body } })
        })
        .collect())
}

/// Records the keys of a batch. A key a concurrent batch inserted first makes this fail with
/// a unique violation on `idempotency_keys_pkey`, and the batch is retried (and then replays).
pub async fn insert(conn: &mut PgConnection, records: &[(KeyId, KeyRecord)], now: DateTime<Utc>) -> sqlx::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, body, created_at)
         SELECT u, k, f, s, b, $6 FROM UNNEST($1::int8[], $2::text[], $3::bytea[], $4::int2[], $5::jsonb[]) AS t(u, k, f, s, b)",
    )
    .bind(records.iter().map(|((user, _), _)| *user).collect::<Vec<_>>())
    .bind(records.iter().map(|((_, key), _)| key.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|(_, record)| record.fingerprint.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|(_, record)| record.response.status as i16).collect::<Vec<_>>())
    .bind(records.iter().map(|(_, record)| record.response.body.clone()).collect::<Vec<_>>())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
