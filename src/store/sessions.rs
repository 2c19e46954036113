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

pub async fn create(
    conn: &mut PgConnection,
    user_id: UserId,
    token: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash(token))
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn revoke(conn: &mut PgConnection, token: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(token)).execute(conn).await?;
    Ok(())
}

/// Recently authenticated tokens, so that most requests skip the session query. An entry is
/// trusted for `ttl` of wall time; expiry is still checked against the clock on every request.
/// Logging out forgets the token here at once; another server process may accept a revoked
/// token for at most `ttl`.
pub struct SessionCache {
    /// Read-locked by every authenticated request, write-locked only to change an entry: a
    /// request never waits for another's look-up.
    entries: std::sync::RwLock<std::collections::HashMap<Vec<u8>, CachedSession>>,
    ttl: std::time::Duration,
}

#[derive(Clone, Copy)]
struct CachedSession {
    user_id: UserId,
    main_account_id: AccountId,
    expires_at: DateTime<Utc>,
    fetched: std::time::Instant,
}

/// Entries kept at most; when full, the cache starts over (cheap, and rare).
const SESSION_CACHE_CAPACITY: usize = 100_000;

impl SessionCache {
    /// A zero `ttl` turns the cache off.
    pub fn new(ttl: std::time::Duration) -> Self {
        SessionCache { entries: std::sync::RwLock::new(std::collections::HashMap::new()), ttl }
    }

    fn entries(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<Vec<u8>, CachedSession>> {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The user behind a live token, from the cache when it is fresh, else from the database.
    pub async fn authenticate(
        &self,
        pool: &sqlx::PgPool,
        token: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Option<(UserId, AccountId)>> {
        let hash = token_hash(token);
        let cached = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&hash).copied();
        if let Some(cached) = cached {
            if cached.fetched.elapsed() < self.ttl && cached.expires_at > now {
                return Ok(Some((cached.user_id, cached.main_account_id)));
            }
        }
        let mut conn = pool.acquire().await?;
        let found: Option<(UserId, AccountId, DateTime<Utc>)> = sqlx::query_as(
            "SELECT s.user_id, a.id, s.expires_at FROM sessions s
               JOIN accounts a ON a.user_id = s.user_id AND a.kind = 'main'
              WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        let mut entries = self.entries();
        match found {
            Some((user_id, main_account_id, expires_at)) if !self.ttl.is_zero() => {
                if entries.len() >= SESSION_CACHE_CAPACITY {
                    entries.clear();
                }
                entries.insert(
                    hash,
                    CachedSession { user_id, main_account_id, expires_at, fetched: std::time::Instant::now() },
                );
            }
            _ => {
                entries.remove(&hash);
            }
        }
        Ok(found.map(|(user_id, main_account_id, _)| (user_id, main_account_id)))
    }

    pub fn forget(&self, token: &str) {
        self.entries().remove(&token_hash(token));
    }
}

/// Deletes up to `limit` sessions that expired by `now`, oldest expiry first, skipping rows
/// another transaction holds; returns how many went. Runs in the caller's transaction.
pub async fn purge_expired(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> sqlx::Result<u64> {
    let purged = sqlx::query(
        "DELETE FROM sessions WHERE token_hash = ANY(ARRAY(
             SELECT token_hash FROM sessions WHERE expires_at <= $1
              ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(now)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(purged.rows_affected())
}
