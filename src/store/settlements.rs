//! Split bills. Creating one moves no money, so it is a plain transaction here: the settlement,
//! its shares and the participants' notifications commit together. Shares are paid only by
//! the ledger writer (`Command::PayShare`), which also completes the settlement; declining a
//! share moves no money either, and is done here under the same row locks as a payment.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::accounts::{AccountId, UserId};
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::{
    self as settlements_domain, DeclineError, PlannedShare, Settlement, SettlementShare, SettlementStatus, Share,
    ShareStatus, SplitMode,
};
use crate::domain::social::{settlements_allowed_again, SocialLimits, OPEN_SHARES_RETRY_AFTER, SETTLEMENT_WINDOW};
use crate::store::notifications;

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
    /// from the requester (see [`CREATE`]). Which one is not said.
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
///
/// Four round trips: BEGIN with the requester's lock and the ledger gate, one statement that
/// checks and inserts ([`CREATE`]), the notifications with their recipient locks
/// (`notifications::insert_all_at_gate`, last), COMMIT.
pub async fn create(
    pool: &PgPool,
    new: NewSettlement<'_>,
    limits: &SocialLimits,
    now: DateTime<Utc>,
) -> Result<Settlement, SettlementStoreError> {
    // One creation at a time per requester, in every server process, so that the limits
    // checked by the next statement (whose snapshot is taken once this lock is held) hold
    // however many requests arrive at once: the requester's creation lock, an advisory lock
    // that only creations take (the user's row lock did the same, but its query had to be
    // planned each time, 0.07 ms). Then the ledger gate, shared by every writer of
    // notifications (see `store::notifications`), before any other lock. Sent with BEGIN as
    // one simple query: the key is an integer, written in. And generic plans: PostgreSQL
    // otherwise plans [`CREATE`] afresh for every creation (its generic plan is estimated
    // dearer than a custom one, with unknown array lengths), which took longer than running it
    // (0.5-0.7 ms against 0.4-0.5). The generic plan reads through the same indexes; a plan
    // made for tables that were empty is made again after ANALYZE (autovacuum's), which
    // invalidates it.
    let key = creation_lock_key(new.requester_id)?;
    let mut tx = pool
        .begin_with(format!(
            "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SELECT pg_advisory_xact_lock({key});
             LOCK TABLE ledger_batch_gate IN ROW SHARE MODE"
        ))
        .await?;
    let created = insert_checked(&mut tx, &new, limits, now).await?;
    if created.refused {
        return Err(SettlementStoreError::ParticipantRefused);
    }
    if let Some(counted_since) = created.counted_since {
        return Err(SettlementStoreError::TooMany {
            until: settlements_allowed_again(counted_since),
            limit: limits.settlements_per_hour,
        });
    }
    if created.crowded {
        return Err(SettlementStoreError::TooMany {
            until: now + OPEN_SHARES_RETRY_AFTER,
            limit: limits.open_shares_per_participant,
        });
    }
    let id = created.id.ok_or_else(|| sqlx::Error::Protocol("a settlement passed its checks, not inserted".into()))?;
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
                "requester_name": created.requester_name,
                "amount": share.amount,
                "total": new.total,
                "mode": new.mode.as_str(),
                "memo": new.memo,
            }),
        })
        .collect();
    notifications::insert_all_at_gate(&mut tx, &requested, now).await?;
    tx.commit().await?;
    Ok(created_settlement(&new, id, now))
}

/// Where the requesters' creation locks start among the bigint advisory lock keys: above the
/// recipient locks (`store::notifications::RECIPIENT_KEY_BASE`, 2^41, for ids below 2^40)
/// and the ledger's account claims (from 2^40), so that none of them meet.
pub const CREATION_KEY_BASE: i64 = 1 << 42;

/// The requester's creation lock key.
fn creation_lock_key(requester: UserId) -> sqlx::Result<i64> {
    let id = requester.get();
    if !(0..notifications::RECIPIENT_ID_BOUND).contains(&id) {
        return Err(sqlx::Error::Protocol(format!("user id {id} is out of the creation locks' range")));
    }
    Ok(CREATION_KEY_BASE + id)
}

/// The creation's checks and inserts, in one statement. The checks, each skipped when its limit
/// is 0:
///
/// - `refused`: some participant ($2) may not be asked by the requester ($1): no such user, a
///   user who blocked the requester, or one who takes requests from friends only and does not
///   list them (one answer for all three, so that a refusal says nothing about which);
/// - `crowded`: some participant already holds $3 (`open_shares_per_participant`) shares of
///   this requester still `requested`;
/// - `counted_since`: the requester's creations since $5 (the last hour) already number $4
///   (`settlements_per_hour`); the oldest one that counts.
///
/// Only when all pass are the settlement and its shares inserted. They name their users and
/// their settlement without foreign keys: every participant was just read as a user, the
/// requester is signed in and locked, and users and settlements are never deleted
/// (migrations/*_settlements_checked_by_the_store.sql).
const CREATE: &str = "
WITH checks AS (
    SELECT EXISTS (
               SELECT 1 FROM UNNEST($2::int8[]) AS p(id)
                WHERE NOT EXISTS (
                      SELECT 1 FROM users u
                       WHERE u.id = p.id
                         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1)
                         AND (u.settlement_requests_from = 'everyone'
                              OR EXISTS (SELECT 1 FROM friends f WHERE f.user_id = u.id AND f.friend_id = $1))))
               AS refused,
           $3::int8 > 0 AND EXISTS (
               SELECT 1 FROM settlement_shares sh JOIN settlements s ON s.id = sh.settlement_id
                WHERE sh.user_id = ANY($2) AND sh.status = 'requested' AND s.requester_id = $1
                GROUP BY sh.user_id HAVING count(*) >= $3)
               AS crowded,
           CASE WHEN $4::int8 > 0 THEN (
               SELECT created_at FROM settlements WHERE requester_id = $1 AND created_at > $5
                ORDER BY created_at DESC OFFSET $4 - 1 LIMIT 1)
           END AS counted_since
), settlement AS (
    INSERT INTO settlements (requester_id, total, mode, status, memo, seed, created_at)
    SELECT $1, $6, $7, 'open', $8, $9, $10 FROM checks
     WHERE NOT refused AND NOT crowded AND counted_since IS NULL
    RETURNING id
), shares AS (
    INSERT INTO settlement_shares (settlement_id, user_id, position, amount, status)
    SELECT settlement.id, sh.* FROM settlement, UNNEST($11::int8[], $12::int4[], $13::int8[], $14::text[]) AS sh
)
SELECT refused, crowded, counted_since, (SELECT id FROM settlement), (SELECT name FROM users WHERE id = $1)
  FROM checks";

/// What [`CREATE`] answered: which check failed, or the new settlement's id.
struct Created {
    refused: bool,
    crowded: bool,
    counted_since: Option<DateTime<Utc>>,
    id: Option<SettlementId>,
    requester_name: Option<String>,
}

/// Runs [`CREATE`] for `new`.
async fn insert_checked(
    conn: &mut PgConnection,
    new: &NewSettlement<'_>,
    limits: &SocialLimits,
    now: DateTime<Utc>,
) -> sqlx::Result<Created> {
    let participants: Vec<UserId> =
        new.shares.iter().filter(|share| share.status == ShareStatus::Requested).map(|share| share.user_id).collect();
    let user_ids: Vec<UserId> = new.shares.iter().map(|share| share.user_id).collect();
    let positions: Vec<i32> = new.shares.iter().map(|share| share.position).collect();
    let amounts: Vec<i64> = new.shares.iter().map(|share| share.amount).collect();
    let statuses: Vec<&str> = new.shares.iter().map(|share| share.status.as_str()).collect();
    let (refused, crowded, counted_since, id, requester_name) = sqlx::query_as(CREATE)
        .bind(new.requester_id)
        .bind(&participants)
        .bind(i64::from(limits.open_shares_per_participant))
        .bind(i64::from(limits.settlements_per_hour))
        .bind(now - SETTLEMENT_WINDOW)
        .bind(new.total)
        .bind(new.mode.as_str())
        .bind(new.memo)
        .bind(new.seed)
        .bind(now)
        .bind(&user_ids)
        .bind(&positions)
        .bind(&amounts)
        .bind(&statuses)
        .fetch_one(conn)
        .await?;
    Ok(Created { refused, crowded, counted_since, id, requester_name })
}

/// The settlement `new` became, with id `id`.
fn created_settlement(new: &NewSettlement<'_>, id: SettlementId, now: DateTime<Utc>) -> Settlement {
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
/// of the settlement, then the requester's recipient lock (`notifications::insert_all_at_gate`, last).
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
            // What was paid is not the decline's business: only the statuses count here.
            Ok(Share { user_id, amount, status, paid_at: None, transfer_id: None })
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
    notifications::insert_all_at_gate(&mut tx, std::slice::from_ref(&notification), now).await?;
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

/// A share of a settlement, with the settlement's own columns: [`get_for_party`]'s row.
#[derive(sqlx::FromRow)]
struct ShareRow {
    requester_id: UserId,
    total: i64,
    mode: String,
    status: String,
    memo: Option<String>,
    seed: Option<i64>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    user_id: UserId,
    position: i32,
    amount: i64,
    share_status: String,
    paid_at: Option<DateTime<Utc>>,
    transfer_id: Option<TransferId>,
}

fn unknown(what: &str, text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {text:?}").into())
}

/// The settlement if the user asked for it or holds a share of it.
pub async fn get_for_party(
    conn: &mut PgConnection,
    user_id: UserId,
    id: SettlementId,
) -> sqlx::Result<Option<Settlement>> {
    // The shares come in the same statement (a payment reads the settlement after it has
    // committed: one round trip, not two), one row each, in plain columns: building JSON in
    // PostgreSQL, to parse it here, cost as much as the rest of the statement. Every settlement
    // has a share.
    let rows: Vec<ShareRow> = sqlx::query_as(
        "SELECT s.requester_id, s.total, s.mode, s.status, s.memo, s.seed, s.created_at, s.completed_at,
                sh.user_id, sh.position, sh.amount, sh.status AS share_status, sh.paid_at, sh.transfer_id
           FROM settlements s JOIN settlement_shares sh ON sh.settlement_id = s.id
          WHERE s.id = $1
            AND (s.requester_id = $2
                 OR EXISTS (SELECT 1 FROM settlement_shares mine WHERE mine.settlement_id = s.id AND mine.user_id = $2))
          ORDER BY sh.position",
    )
    .bind(id)
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let shares = rows
        .iter()
        .map(|row| {
            Ok(SettlementShare {
                settlement_id: id,
                user_id: row.user_id,
                position: row.position,
                amount: row.amount,
                status: ShareStatus::parse(&row.share_status)
                    .ok_or_else(|| unknown("share status", &row.share_status))?,
                paid_at: row.paid_at,
                transfer_id: row.transfer_id,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Some(Settlement {
        id,
        requester_id: first.requester_id,
        total: first.total,
        mode: SplitMode::parse(&first.mode).ok_or_else(|| unknown("split mode", &first.mode))?,
        status: SettlementStatus::parse(&first.status).ok_or_else(|| unknown("settlement status", &first.status))?,
        memo: first.memo.clone(),
        seed: first.seed,
        created_at: first.created_at,
        completed_at: first.completed_at,
        shares,
    }))
}

/// What paying a share needs to know before the ledger runs it: who asked, into which main
/// account the share goes, and the memo of the payment; and the settlement's other fixed
/// fields, which its answer shows beside the shares as the payment's batch leaves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTarget {
    pub requester_id: UserId,
    pub requester_main_account_id: AccountId,
    pub memo: Option<String>,
    pub mode: SplitMode,
    pub created_at: DateTime<Utc>,
}

/// Settlements' [`PaymentTarget`]s and parties (the requester and every user with a share),
/// kept per process so that a payment reaches the ledger without a query of its own. None of it
/// ever changes: shares are inserted with their settlement and never deleted or moved, the memo
/// is never edited, and a user's main account is fixed. So an entry never goes stale, and a
/// settlement another process created is read once, then known here too.
#[derive(Default)]
pub struct PaymentTargets {
    known: std::sync::RwLock<HashMap<SettlementId, Arc<KnownSettlement>>>,
}

struct KnownSettlement {
    target: PaymentTarget,
    parties: Vec<UserId>,
}

impl KnownSettlement {
    /// The target, and its parties: the requester and the users with a share.
    fn new(target: PaymentTarget, shareholders: impl IntoIterator<Item = UserId>) -> Self {
        let parties = std::iter::once(target.requester_id).chain(shareholders).collect();
        KnownSettlement { target, parties }
    }
}

/// Settlements kept at most; when full, the cache starts over (cheap, and rare). Shares are paid
/// soon after their settlement is created, so recent settlements are what counts: 10,000 are
/// the last 20 s of creations of `perf/run`'s settlement evening at 100 users, whose payments
/// follow within a second. (100,000 left the server 8 MiB larger after that scenario.)
const PAYMENT_TARGETS_CAPACITY: usize = 10_000;

impl PaymentTargets {
    fn remember(&self, id: SettlementId, known: Arc<KnownSettlement>) {
        // Held for a map operation only; a panic under it cannot leave the map half-changed.
        let mut map = self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= PAYMENT_TARGETS_CAPACITY {
            map.clear();
        }
        map.insert(id, known);
    }

    /// Remembers a settlement this process has just created for a requester whose main account
    /// is `requester_main_account_id`.
    pub fn created(&self, settlement: &Settlement, requester_main_account_id: AccountId) {
        let target = PaymentTarget {
            requester_id: settlement.requester_id,
            requester_main_account_id,
            memo: settlement.memo.clone(),
            mode: settlement.mode,
            created_at: settlement.created_at,
        };
        let shareholders = settlement.shares.iter().map(|share| share.user_id);
        self.remember(settlement.id, Arc::new(KnownSettlement::new(target, shareholders)));
    }

    /// The settlement's [`PaymentTarget`] if the user asked for it or holds a share of it (the
    /// same parties as [`get_for_party`]): from what this process knows, else in one query.
    pub async fn get(&self, pool: &PgPool, user_id: UserId, id: SettlementId) -> sqlx::Result<Option<PaymentTarget>> {
        let cached = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&id).cloned();
        let known = match cached {
            Some(known) => known,
            None => match read_payment_target(pool, id).await? {
                Some(known) => {
                    let known = Arc::new(known);
                    self.remember(id, known.clone());
                    known
                }
                None => return Ok(None),
            },
        };
        Ok(known.parties.contains(&user_id).then(|| known.target.clone()))
    }
}

/// A settlement's [`KnownSettlement`], read.
async fn read_payment_target(pool: &PgPool, id: SettlementId) -> sqlx::Result<Option<KnownSettlement>> {
    type Row = (UserId, AccountId, Option<String>, String, DateTime<Utc>, Vec<UserId>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.requester_id, a.id, s.memo, s.mode, s.created_at,
                ARRAY(SELECT sh.user_id FROM settlement_shares sh WHERE sh.settlement_id = s.id)
           FROM settlements s
           JOIN accounts a ON a.user_id = s.requester_id AND a.kind = 'main'
          WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((requester_id, requester_main_account_id, memo, mode, created_at, shares)) = row else {
        return Ok(None);
    };
    let mode = SplitMode::parse(&mode).ok_or_else(|| unknown("split mode", &mode))?;
    let target = PaymentTarget { requester_id, requester_main_account_id, memo, mode, created_at };
    Ok(Some(KnownSettlement::new(target, shares)))
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
