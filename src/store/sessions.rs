//! Bearer sessions. Only the SHA-256 of a token is stored; the token itself is shown once.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::domain::accounts::{AccountId, UserId};

/// 32 random bytes, hex: 256 bits of entropy.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub async fn create(conn: &mut PgConnection, user_id: UserId, token: &str, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash(token))
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user behind a token that has not expired at `now`, with their main account.
pub async fn authenticate(conn: &mut PgConnection, token: &str, now: DateTime<Utc>) -> sqlx::Result<Option<(UserId, AccountId)>> {
    sqlx::query_as(
        "SELECT s.user_id, a.id FROM sessions s
           JOIN accounts a ON a.user_id = s.user_id AND a.kind = 'main'
          WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(conn)
    .await
}

pub async fn revoke(conn: &mut PgConnection, token: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(token)).execute(conn).await?;
    Ok(())
}
