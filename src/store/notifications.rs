//! Notifications: written in the transaction of the change that causes them (by the ledger
//! writer for money received, by `insert_all` for everything else), read by id.
//!
//! # Each user's ids become visible in increasing order
//!
//! Readers page through their own notifications with `after=<id>`, so a user's notification
//! whose transaction took a smaller id but committed after a larger one of the same user would
//! never be seen by a reader already past it. Ids come from one sequence, in the order they are
//! taken; so it is enough that every writer of a user's notifications holds, from before it
//! takes their ids until its COMMIT, a lock that every other writer of that user's
//! notifications waits for, and nothing else does: the user's *recipient lock*, a
//! transaction-level advisory lock keyed by the user's id, taken in user id order by the
//! statement that inserts the notifications ([`INSERT_WITH_RECIPIENT_LOCKS`]).
//!
//! - A ledger batch takes the recipient locks of the users it notifies (money received, a held
//!   transfer, a missed installment) in the statement that inserts its notifications, sent in
//!   one flight after its write and before its COMMIT, and holds them until that COMMIT
//!   (`crate::ledger::store::write_and_commit`): for the insert and the COMMIT, not for the
//!   write. Two batches never wait for each other there: a batch notifies only owners of main
//!   accounts it has locked.
//! - Every other writer on a request path ([`insert_all`], [`insert_all_at_gate`]: a split
//!   bill, a decline) takes them last, in the statement that inserts, after every row lock it
//!   takes.
//! - The jobs that write notifications in set-based SQL (pending expiry, reminders) hold the
//!   ledger gate in EXCLUSIVE mode, which no batch and no other writer holds meanwhile: they
//!   and the writers above take it in ROW SHARE mode.
//!
//! So a split bill waits for, and holds up, only a batch that pays one of its participants at
//! that moment, and only while that batch inserts its notifications and commits; a batch that
//! debits a participant does not concern it. The lock changes no row, writes no WAL and is gone at
//! COMMIT. Set aside: the participants' main account rows (locked FOR NO KEY UPDATE), which a
//! batch holds from its write to its COMMIT for every debit as well, so that split bills would
//! wait for share payments of their participants; and readers that see only ids below the
//! oldest open writer (by transaction id), which would need a cursor on (transaction id, id)
//! and make every reader wait for the slowest writer of any user.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::accounts::UserId;
use crate::domain::notifications::{NewNotification, Notification, NotificationKind};

/// Inserts `notifications` in order, inside the caller's transaction, after taking what writing
/// them needs until that transaction ends: the ledger gate in ROW SHARE mode, then their
/// recipients' locks (see the module documentation). Call it last, just before COMMIT, so that
/// the locks are held as briefly as possible.
pub async fn insert_all(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    crate::store::tx::share_ledger_gate(&mut *conn).await?;
    insert_all_at_gate(conn, notifications, now).await
}

/// Inserts `notifications` in order, with their recipients' locks, in one statement: after every
/// row lock of the caller's transaction, which holds the ledger gate already (in any mode, as
/// [`insert_all`] takes it). The locks are an uncorrelated subquery of the insert's condition,
/// which PostgreSQL evaluates once, before the first row reaches the insert and draws its id.
pub async fn insert_all_at_gate(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    let users: Vec<UserId> = notifications.iter().map(|n| n.user_id).collect();
    let kinds: Vec<&str> = notifications.iter().map(|n| n.kind.as_str()).collect();
    let payloads: Vec<Json<&serde_json::Value>> = notifications.iter().map(|n| Json(&n.payload)).collect();
    sqlx::query(INSERT_WITH_RECIPIENT_LOCKS)
        .bind(&users)
        .bind(&kinds)
        .bind(&payloads)
        .bind(now)
        .bind(recipients(users.iter().copied()))
        .bind(RECIPIENT_KEY_BASE)
        .bind(RECIPIENT_ID_BOUND)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts notifications in order ($1 users, $2 kinds, $3 payloads, $4 the time), having taken
/// the recipient locks of $5 ([`recipients`] of $1; $6 [`RECIPIENT_KEY_BASE`], $7
/// [`RECIPIENT_ID_BOUND`]): an uncorrelated subquery of the condition, which PostgreSQL evaluates
/// once, before the first row reaches the insert and draws its id. Used on request paths
/// ([`insert_all_at_gate`]) and by the ledger batch (`crate::ledger::store::write_and_commit`).
pub const INSERT_WITH_RECIPIENT_LOCKS: &str = "INSERT INTO notifications (user_id, kind, payload, created_at)
 SELECT u, k, p, $4 FROM UNNEST($1::int8[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS n(u, k, p, position)
  WHERE (SELECT count(pg_advisory_xact_lock($6 + r.id)) FROM UNNEST($5::int8[]) AS r(id)
          WHERE r.id >= 0 AND r.id < $7) >= 0
  ORDER BY n.position";

/// Where the recipient locks' keys start among the bigint advisory lock keys: above the
/// ledger's account claims (`crate::ledger::store`, from 2^40), so that the two never meet.
pub const RECIPIENT_KEY_BASE: i64 = 1 << 41;

/// Ids from 0 up to this one (exclusive) have a recipient lock of their own; user ids come
/// from a sequence and stay far below it.
pub const RECIPIENT_ID_BOUND: i64 = 1 << 40;

/// The users to lock for `users`: sorted and distinct, the order [`INSERT_WITH_RECIPIENT_LOCKS`]
/// takes their locks in.
pub fn recipients(users: impl IntoIterator<Item = UserId>) -> Vec<i64> {
    let mut ids: Vec<i64> = users.into_iter().map(UserId::get).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The user's notifications with ids above `after_id`, oldest first, at most `limit`.
pub async fn list_after(
    conn: &mut PgConnection,
    user_id: UserId,
    after_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<Notification>> {
    let rows: Vec<(i64, String, DateTime<Utc>, serde_json::Value)> = sqlx::query_as(
        "SELECT id, kind, created_at, payload FROM notifications
          WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(user_id)
    .bind(after_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, kind, created_at, payload)| {
            // The column's CHECK allows only the kinds the enum knows.
            let kind = NotificationKind::parse(&kind)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown notification kind {kind:?}").into()))?;
            Ok(Notification { id, kind, created_at, payload })
        })
        .collect()
}
