//! Split bills. Creating one moves no money, so it is a plain transaction here: the settlement,
//! its shares and the participants' notifications commit together. Shares are paid only by
//! the ledger writer (`Command::PayShare`), which also completes the settlement; declining a
//! share moves no money either, and is done here under the same row locks as a payment.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::accounts::{AccountId, UserId};
use crate::domain::ids::SettlementId;
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::{
    self as settlements_domain, DeclineError, PlannedShare, Settlement, SettlementShare, SettlementStatus, Share,
    ShareStatus, SplitMode,
};
use crate::domain::social::{settlements_allowed_again, SocialLimits, OPEN_SHARES_RETRY_AFTER, SETTLEMENT_WINDOW};
use crate::store::notifications;
use crate::store::social;
use crate::store::tx::violated_constraint;

/// A settlement to create; `shares` come from `domain::settlements::plan_shares`.
pub struct NewSettlement<'a> {
    pub requester_id: UserId,
    pub total: i64,
    pub mode: SplitMode,
    pub memo: Option<&'a str>,
    /// Stored for a random split, so that it can be reproduced.
    pub seed: Option<i64>,
    pub shares: &'a [PlannedShare],
}

#[derive(Debug, thiserror::Error)]
pub enum SettlementStoreError {
    /// Some participant may not be asked: no such user, or one who does not take requests
    /// from the requester (see `store::social::any_refuses_requests`). Which one is not said.
    #[error("some participant cannot be asked to pay")]
    ParticipantRefused,
    /// A limit of `SocialLimits` (allowing `limit`) is used up until `until`.
    #[error("too many split-bill requests")]
    TooMany { until: DateTime<Utc>, limit: u32 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates the settlement with its shares and a `settlement_requested` notification for each
/// participant, in one transaction, within the requester's limits and only towards
/// participants who take requests from them.
pub async fn create(
    pool: &PgPool,
    new: NewSettlement<'_>,
    limits: &SocialLimits,
    now: DateTime<Utc>,
) -> Result<Settlement, SettlementStoreError> {
    let mut tx = pool.begin().await?;
    let participants: Vec<UserId> =
        new.shares.iter().filter(|share| share.status == ShareStatus::Requested).map(|share| share.user_id).collect();
    // One creation at a time per requester, in every server process, so that the limits below
    // hold however many requests arrive at once. NO KEY UPDATE: foreign keys to the user (FOR
    // KEY SHARE) are not held up.
    let requester_name: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(new.requester_id)
        .fetch_optional(&mut *tx)
        .await?;
    check_hourly_limit(&mut tx, &new, limits, now).await?;
    // Users are never deleted, so those found here still exist at COMMIT; the foreign key on
    // the shares is the last line of defence. A block or a setting changed after this check
    // may miss this settlement (see `store::social`).
    if social::any_refuses_requests(&mut tx, new.requester_id, &participants).await? {
        return Err(SettlementStoreError::ParticipantRefused);
    }
    check_open_shares_limit(&mut tx, &new, &participants, limits, now).await?;
    let id = insert_settlement(&mut tx, &new, now).await?;
    let requested: Vec<NewNotification> = new
        .shares
        .iter()
        .filter(|share| share.status == ShareStatus::Requested)
        .map(|share| NewNotification {
            user_id: share.user_id,
            kind: NotificationKind::SettlementRequested,
            payload: json!({
                "settlement_id": id,
                "requester_id": new.requester_id,
                "requester_name": requester_name,
                "amount": share.amount,
                "total": new.total,
                "mode": new.mode.as_str(),
                "memo": new.memo,
            }),
        })
        .collect();
    notifications::insert_all(&mut tx, &requested, now).await?;
    tx.commit().await?;
    Ok(created(&new, id, now))
}

/// Refuses a creation past `limits.settlements_per_hour` (under the requester's row lock).
async fn check_hourly_limit(
    conn: &mut PgConnection,
    new: &NewSettlement<'_>,
    limits: &SocialLimits,
    now: DateTime<Utc>,
) -> Result<(), SettlementStoreError> {
    if limits.settlements_per_hour == 0 {
        return Ok(());
    }
    // The oldest creation that still counts when the hour's creations are used up.
    let counted_since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT created_at FROM settlements WHERE requester_id = $1 AND created_at > $2
          ORDER BY created_at DESC OFFSET $3 LIMIT 1",
    )
    .bind(new.requester_id)
    .bind(now - SETTLEMENT_WINDOW)
    .bind(i64::from(limits.settlements_per_hour) - 1)
    .fetch_optional(&mut *conn)
    .await?;
    match counted_since {
        Some(counted_since) => Err(SettlementStoreError::TooMany {
            until: settlements_allowed_again(counted_since),
            limit: limits.settlements_per_hour,
        }),
        None => Ok(()),
    }
}

/// Refuses a creation that would give some participant more than
/// `limits.open_shares_per_participant` open shares of this requester.
async fn check_open_shares_limit(
    conn: &mut PgConnection,
    new: &NewSettlement<'_>,
    participants: &[UserId],
    limits: &SocialLimits,
    now: DateTime<Utc>,
) -> Result<(), SettlementStoreError> {
    if limits.open_shares_per_participant == 0 {
        return Ok(());
    }
    let crowded: bool = sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM settlement_shares sh JOIN settlements s ON s.id = sh.settlement_id
             WHERE sh.user_id = ANY($1) AND sh.status = 'requested' AND s.requester_id = $2
             GROUP BY sh.user_id HAVING count(*) >= $3)",
    )
    .bind(participants)
    .bind(new.requester_id)
    .bind(i64::from(limits.open_shares_per_participant))
    .fetch_one(&mut *conn)
    .await?;
    if crowded {
        return Err(SettlementStoreError::TooMany {
            until: now + OPEN_SHARES_RETRY_AFTER,
            limit: limits.open_shares_per_participant,
        });
    }
    Ok(())
}

/// Inserts the settlement and its shares; returns its id.
async fn insert_settlement(
    conn: &mut PgConnection,
    new: &NewSettlement<'_>,
    now: DateTime<Utc>,
) -> Result<SettlementId, SettlementStoreError> {
    let id: SettlementId = sqlx::query_scalar(
        "INSERT INTO settlements (requester_id, total, mode, status, memo, seed, created_at)
         VALUES ($1, $2, $3, 'open', $4, $5, $6) RETURNING id",
    )
    .bind(new.requester_id)
    .bind(new.total)
    .bind(new.mode.as_str())
    .bind(new.memo)
    .bind(new.seed)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;

    let user_ids: Vec<UserId> = new.shares.iter().map(|share| share.user_id).collect();
    let positions: Vec<i32> = new.shares.iter().map(|share| share.position).collect();
    let amounts: Vec<i64> = new.shares.iter().map(|share| share.amount).collect();
    let statuses: Vec<&str> = new.shares.iter().map(|share| share.status.as_str()).collect();
    sqlx::query(
        "INSERT INTO settlement_shares (settlement_id, user_id, position, amount, status)
         SELECT $1, * FROM UNNEST($2::int8[], $3::int4[], $4::int8[], $5::text[])",
    )
    .bind(id)
    .bind(&user_ids)
    .bind(&positions)
    .bind(&amounts)
    .bind(&statuses)
    .execute(&mut *conn)
    .await
    .map_err(|error| match violated_constraint(&error) {
        Some("settlement_shares_user_id_fkey") => SettlementStoreError::ParticipantRefused,
        _ => SettlementStoreError::Database(error),
    })?;
    Ok(id)
}

/// The settlement `new` became, with id `id`.
fn created(new: &NewSettlement<'_>, id: SettlementId, now: DateTime<Utc>) -> Settlement {
    Settlement {
        id,
        requester_id: new.requester_id,
        total: new.total,
        mode: new.mode,
        status: SettlementStatus::Open,
        memo: new.memo.map(str::to_owned),
        seed: new.seed,
        created_at: now,
        completed_at: None,
        shares: new
            .shares
            .iter()
            .map(|share| SettlementShare {
                settlement_id: id,
                user_id: share.user_id,
                position: share.position,
                amount: share.amount,
                status: share.status,
                paid_at: None,
                transfer_id: None,
            })
            .collect(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeclineStoreError {
    #[error(transparent)]
    Refused(#[from] DeclineError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Declines `participant`'s share of settlement `id` and tells the requester with
/// `notification`; the settlement completes when no share is left `requested`.
///
/// A payment of the same share runs in a ledger batch, which waits at the ledger gate, locks
/// the settlement's shares FOR UPDATE (`ledger::store`) and takes the recipient locks of the
/// users it notifies last. This takes the same locks in the same order: the gate, every share
/// of the settlement, then the requester's recipient lock (`notifications::insert_all`, last).
/// So a decline and a payment never deadlock, and whichever locks the shares second sees what
/// the first did: a share paid meanwhile is not declined, and a payment after the decline is
/// refused.
pub async fn decline(
    pool: &PgPool,
    id: SettlementId,
    participant: UserId,
    notification: NewNotification,
    now: DateTime<Utc>,
) -> Result<(), DeclineStoreError> {
    let mut tx = pool.begin().await?;
    crate::store::tx::share_ledger_gate(&mut tx).await?;
    let rows: Vec<(UserId, i64, String)> = sqlx::query_as(
        "SELECT user_id, amount, status FROM settlement_shares WHERE settlement_id = $1 ORDER BY position FOR UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut shares = rows
        .into_iter()
        .map(|(user_id, amount, status)| {
            let status = ShareStatus::parse(&status)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown share status {status:?}").into()))?;
            Ok(Share { user_id, amount, status })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    let completes = settlements_domain::decline(&mut shares, participant)?;
    sqlx::query("UPDATE settlement_shares SET status = 'declined' WHERE settlement_id = $1 AND user_id = $2")
        .bind(id)
        .bind(participant)
        .execute(&mut *tx)
        .await?;
    if completes {
        sqlx::query("UPDATE settlements SET status = 'completed', completed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    notifications::insert_all(&mut tx, std::slice::from_ref(&notification), now).await?;
    tx.commit().await?;
    Ok(())
}

fn settlement_from_row(row: &PgRow) -> sqlx::Result<Settlement> {
    let Json(settlement): Json<Settlement> = row.try_get(0)?;
    Ok(settlement)
}

/// Fills in the shares of `settlements`, in position order.
async fn with_shares(conn: &mut PgConnection, mut settlements: Vec<Settlement>) -> sqlx::Result<Vec<Settlement>> {
    if settlements.is_empty() {
        return Ok(settlements);
    }
    let ids: Vec<i64> = settlements.iter().map(|settlement| settlement.id.get()).collect();
    let rows = sqlx::query(
        "SELECT to_jsonb(sh) FROM settlement_shares sh WHERE settlement_id = ANY($1) ORDER BY settlement_id, position",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let index: HashMap<SettlementId, usize> =
        settlements.iter().enumerate().map(|(index, settlement)| (settlement.id, index)).collect();
    for row in rows {
        let Json(share): Json<SettlementShare> = row.try_get(0)?;
        if let Some(&at) = index.get(&share.settlement_id) {
            settlements[at].shares.push(share);
        }
    }
    Ok(settlements)
}

/// The settlement if the user asked for it or holds a share of it.
pub async fn get_for_party(
    conn: &mut PgConnection,
    user_id: UserId,
    id: SettlementId,
) -> sqlx::Result<Option<Settlement>> {
    // The shares come in the same statement: a payment reads the settlement after it has
    // committed: one round trip, not two.
    let row = sqlx::query(
        "SELECT to_jsonb(s) || jsonb_build_object('shares',
                    (SELECT coalesce(jsonb_agg(to_jsonb(sh) ORDER BY sh.position), '[]'::jsonb)
                       FROM settlement_shares sh WHERE sh.settlement_id = s.id))
           FROM settlements s
          WHERE s.id = $1
            AND (s.requester_id = $2
                 OR EXISTS (SELECT 1 FROM settlement_shares sh WHERE sh.settlement_id = s.id AND sh.user_id = $2))",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(settlement_from_row).transpose()
}

/// What paying a share needs to know before the ledger runs it: who asked, into which main
/// account the share goes, and the memo of the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTarget {
    pub requester_id: UserId,
    pub requester_main_account_id: AccountId,
    pub memo: Option<String>,
}

/// The settlement's [`PaymentTarget`] if the user asked for it or holds a share of it (the same
/// parties as [`get_for_party`]), in one query: a payment reads the settlement itself only
/// once it has committed.
pub async fn payment_target(
    conn: &mut PgConnection,
    user_id: UserId,
    id: SettlementId,
) -> sqlx::Result<Option<PaymentTarget>> {
    let row: Option<(UserId, AccountId, Option<String>)> = sqlx::query_as(
        "SELECT s.requester_id, a.id, s.memo FROM settlements s
           JOIN accounts a ON a.user_id = s.requester_id AND a.kind = 'main'
          WHERE s.id = $1
            AND (s.requester_id = $2
                 OR EXISTS (SELECT 1 FROM settlement_shares sh WHERE sh.settlement_id = s.id AND sh.user_id = $2))",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(requester_id, requester_main_account_id, memo)| PaymentTarget {
        requester_id,
        requester_main_account_id,
        memo,
    }))
}

/// Which settlements a user lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Those the user asked for.
    Requested,
    /// Those the user is asked to pay a share of (paid or not).
    Owed,
    /// Either.
    Both,
}

/// The user's settlements in `role`, newest first, with ids below `before_id`.
pub async fn list(
    conn: &mut PgConnection,
    user_id: UserId,
    role: Role,
    before_id: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Settlement>> {
    let (requested, owed) = match role {
        Role::Requested => (true, false),
        Role::Owed => (false, true),
        Role::Both => (true, true),
    };
    // Each side reads at most `limit` ids through its own index, then the union is cut again.
    let rows = sqlx::query(
        "SELECT to_jsonb(s) FROM settlements s
          WHERE s.id IN (
                (SELECT id FROM settlements
                  WHERE $4 AND requester_id = $1 AND ($2::int8 IS NULL OR id < $2)
                  ORDER BY id DESC LIMIT $3)
                UNION
                (SELECT settlement_id FROM settlement_shares
                  WHERE $5 AND user_id = $1 AND status <> 'self' AND ($2::int8 IS NULL OR settlement_id < $2)
                  ORDER BY settlement_id DESC LIMIT $3))
          ORDER BY s.id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(before_id)
    .bind(limit)
    .bind(requested)
    .bind(owed)
    .fetch_all(&mut *conn)
    .await?;
    let settlements = rows.iter().map(settlement_from_row).collect::<sqlx::Result<Vec<_>>>()?;
    with_shares(conn, settlements).await
}
