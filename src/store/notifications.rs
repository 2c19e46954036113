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
//! notifications waits for. Two locks do it, neither of which stops anything else:
//!
//! - The user's main account row, between ledger batches and the other writers on request
//!   paths. A batch locks it anyway (FOR UPDATE, before its write): every notification a batch
//!   writes goes to the owner of a main account the command locks — money received (a transfer,
//!   a paid share, an accepted pending transfer: the receiving main account, which the command
//!   names and the apply step checks), a held transfer (the same), a missed installment (the
//!   user's main account, which the installment checks is theirs). [`insert_all`] locks the
//!   recipients' main accounts, in id order like a batch, just before it inserts. That lock is
//!   FOR NO KEY UPDATE: it excludes batches and other writers of the same users, and leaves
//!   foreign-key checks on the accounts alone; it changes no row version, so a SERIALIZABLE batch
//!   that waited for it goes on without a serialization failure.
//! - The ledger gate, between those writers and the jobs that write notifications in set-based
//!   SQL (pending expiry, reminders; installments go through the writer): a job's chunk holds
//!   it in EXCLUSIVE mode from its first statement to COMMIT, batches and [`insert_all`] in ROW
//!   SHARE mode, which they share with each other and which waits for the job's chunk.
//!
//! So a split bill waits for, and holds up, only the batches on its participants' accounts
//! (and at most one job chunk), where it used to stop every batch of every process until it
//! committed. Two alternatives were set aside: a per-user counter row would need a lock of its
//! own and a new cursor to page by, and readers that see only ids below the oldest open writer
//! (by transaction id) would need a cursor on (transaction id, id) and would make every reader
//! wait for the slowest writer of any user. The account row costs batches nothing: they hold it
//! already.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::accounts::UserId;
use crate::domain::notifications::{NewNotification, Notification, NotificationKind};

/// Inserts `notifications` in order, inside the caller's transaction, after locking their
/// recipients ([`lock_recipients`]) until that transaction ends (see the module documentation).
/// Call it last, just before COMMIT, so that the locks are held as briefly as possible.
pub async fn insert_all(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    let users: Vec<UserId> = notifications.iter().map(|n| n.user_id).collect();
    lock_recipients(&mut *conn, &users).await?;
    let kinds: Vec<&str> = notifications.iter().map(|n| n.kind.as_str()).collect();
    let payloads: Vec<Json<&serde_json::Value>> = notifications.iter().map(|n| Json(&n.payload)).collect();
    sqlx::query(
        "INSERT INTO notifications (user_id, kind, payload, created_at)
         SELECT u, k, p, $4 FROM UNNEST($1::int8[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS n(u, k, p, position)
          ORDER BY n.position",
    )
    .bind(&users)
    .bind(&kinds)
    .bind(&payloads)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes, until the caller's transaction ends, what writing notifications to `users` needs: the
/// ledger gate in ROW SHARE mode, then the users' main accounts in id order (FOR NO KEY UPDATE).
/// [`insert_all`] takes them itself; a caller that locks rows a ledger batch locks after the
/// accounts (daily counters, idempotency keys, transfers, settlement shares) must call this
/// first, so that it never holds such a row while it waits for an account whose batch waits
/// for that row (the lock order in `crate::ledger::writer`). Taking them again waits for nothing.
pub async fn lock_recipients(conn: &mut PgConnection, users: &[UserId]) -> sqlx::Result<()> {
    crate::store::tx::share_ledger_gate(&mut *conn).await?;
    sqlx::query("SELECT 1 FROM accounts WHERE user_id = ANY($1) AND kind = 'main' ORDER BY id FOR NO KEY UPDATE")
        .bind(users)
        .execute(conn)
        .await?;
    Ok(())
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
