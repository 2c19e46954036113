//! Users: sign-up (with the main account, in one transaction), look-ups, profile changes.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::accounts::{AccountId, UserId};
use crate::domain::names::{skeleton, still_reserved, UserName};
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
    match violated_constraint(&error) {
        Some("users_name_key" | "users_name_skeleton_key") => UserStoreError::NameTaken,
        _ => UserStoreError::Database(error),
    }
}

const USER_SELECT: &str = "SELECT u.id, u.name, a.id AS main_account_id, u.transfer_mode, u.settlement_requests_from
     FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'main'";

/// Creates the user and their main account together: a user never exists without one. The
/// name's skeleton must be free: no user has it (the unique index) and no other user's rename
/// freed it less than 30 days ago.
pub async fn create(
    pool: &PgPool,
    name: &UserName,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<User, UserStoreError> {
    let skeleton = name.skeleton();
    let mut tx = pool.begin().await?;
    let id: UserId = sqlx::query_scalar(
        "INSERT INTO users (name, name_skeleton, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(name.as_str())
    .bind(&skeleton)
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_name_taken)?;
    take_released(&mut tx, id, &skeleton, now).await?;
    let main_account_id = accounts::insert_main(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(User {
        id,
        name: name.as_str().to_owned(),
        main_account_id,
        transfer_mode: "immediate".to_owned(),
        settlement_requests_from: SettlementRequestsFrom::Everyone.as_str().to_owned(),
    })
}

/// Takes a skeleton that a rename freed, for `user_id`, who has just written it into their
/// own row in the same transaction; refuses it while it is still reserved for someone else.
///
/// The order (write the row, then look here) is what makes this safe under READ COMMITTED
/// without further locks: a rename that frees the skeleton writes its release in the
/// transaction that gives the skeleton up, and the unique index makes the write above wait
/// for that transaction to end; this statement's snapshot, taken after the wait, then sees
/// the release.
async fn take_released(
    conn: &mut PgConnection,
    user_id: UserId,
    skeleton: &str,
    now: DateTime<Utc>,
) -> Result<(), UserStoreError> {
    let released: Option<(UserId, DateTime<Utc>)> =
        sqlx::query_as("DELETE FROM user_name_releases WHERE skeleton = $1 RETURNING user_id, released_at")
            .bind(skeleton)
            .fetch_optional(conn)
            .await?;
    match released {
        // The caller's transaction rolls back, and the release with it.
        Some((holder, released_at)) if holder != user_id && still_reserved(released_at, now) => {
            Err(UserStoreError::NameTaken)
        }
        _ => Ok(()),
    }
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
/// it is. A new name must be free (as at sign-up); the one it replaces stays reserved for this
/// user for 30 days.
pub async fn update_profile(
    pool: &PgPool,
    id: UserId,
    name: Option<&UserName>,
    transfer_mode: Option<&str>,
    settlement_requests_from: Option<SettlementRequestsFrom>,
    now: DateTime<Utc>,
) -> Result<Option<User>, UserStoreError> {
    let mut tx = pool.begin().await?;
    let Some(old_skeleton) =
        sqlx::query_scalar::<_, Option<String>>("SELECT name_skeleton FROM users WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    let skeleton = name.map(UserName::skeleton);
    sqlx::query(
        "UPDATE users SET name = COALESCE($2, name), name_skeleton = COALESCE($3, name_skeleton),
                          transfer_mode = COALESCE($4, transfer_mode),
                          settlement_requests_from = COALESCE($5, settlement_requests_from)
          WHERE id = $1",
    )
    .bind(id)
    .bind(name.map(UserName::as_str))
    .bind(&skeleton)
    .bind(transfer_mode)
    .bind(settlement_requests_from.map(SettlementRequestsFrom::as_str))
    .execute(&mut *tx)
    .await
    .map_err(map_name_taken)?;
    // A new look: take it (if a rename freed it) and free the old one. The same look (the same
    // name, or a look-alike of it) is the user's already.
    if let Some(skeleton) = skeleton.filter(|skeleton| old_skeleton.as_ref() != Some(skeleton)) {
        take_released(&mut tx, id, &skeleton, now).await?;
        if let Some(old_skeleton) = old_skeleton {
            sqlx::query(
                "INSERT INTO user_name_releases (skeleton, user_id, released_at) VALUES ($1, $2, $3)
                 ON CONFLICT (skeleton) DO UPDATE SET user_id = EXCLUDED.user_id, released_at = EXCLUDED.released_at",
            )
            .bind(old_skeleton)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    let user = find_by_id(&mut tx, id).await?;
    tx.commit().await?;
    Ok(user)
}

/// Gives every user without a skeleton theirs (see the migration that added the column):
/// oldest first, so that of two look-alike names the older keeps the look and the younger
/// stays without (and keeps its name). Safe beside running servers and other migrators:
/// a skeleton taken meanwhile makes the chunk run again, and then it is left out.
pub async fn fill_name_skeletons(pool: &PgPool) -> anyhow::Result<u64> {
    const CHUNK: i64 = 1_000;
    const ATTEMPTS: u32 = 5;
    let mut after = UserId::new(0);
    let mut filled = 0;
    loop {
        let rows: Vec<(UserId, String)> =
            sqlx::query_as("SELECT id, name FROM users WHERE name_skeleton IS NULL AND id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(CHUNK)
                .fetch_all(pool)
                .await?;
        let Some(&(last, _)) = rows.last() else { return Ok(filled) };
        after = last;
        // Within the chunk too, the oldest of look-alikes is the one that gets the skeleton.
        let mut seen = std::collections::HashSet::new();
        let (ids, skeletons): (Vec<UserId>, Vec<String>) = rows
            .iter()
            .map(|(id, name)| (*id, skeleton(name)))
            .filter(|(_, skeleton)| seen.insert(skeleton.clone()))
            .unzip();
        let mut attempt = 1;
        loop {
            let updated = sqlx::query(
                "UPDATE users u SET name_skeleton = v.skeleton
                   FROM UNNEST($1::int8[], $2::text[]) AS v(id, skeleton)
                  WHERE u.id = v.id AND u.name_skeleton IS NULL
                    AND NOT EXISTS (SELECT 1 FROM users o WHERE o.name_skeleton = v.skeleton)",
            )
            .bind(&ids)
            .bind(&skeletons)
            .execute(pool)
            .await;
            match updated {
                Ok(done) => {
                    filled += done.rows_affected();
                    break;
                }
                Err(error) if attempt < ATTEMPTS && violated_constraint(&error) == Some("users_name_skeleton_key") => {
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
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
