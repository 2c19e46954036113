//! Notifications: written in the transaction of the change that causes them (by the ledger
//! writer for money received, by `insert_all` for everything else), read by id.
//!
//! Readers page with `after=<id>`, so ids must become visible in increasing order: a
//! notification whose transaction took a smaller id but committed after a larger one would
//! never be seen by a reader already past it. Every writer therefore inserts while holding the
//! ledger's batch gate (ledger batches hold it from their first statement to COMMIT; `insert_all`
//! takes it just before inserting), so ids are taken and committed in one order.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::accounts::UserId;
use crate::domain::notifications::{NewNotification, Notification, NotificationKind};

/// Inserts `notifications` in order, inside the caller's transaction, holding the ledger's
/// batch gate until that transaction ends (see the module documentation). Call it last, just
/// before COMMIT, so that the gate is held as briefly as possible; a caller that has locked
/// rows a ledger batch may lock must have taken the gate before them (the lock order in
/// `crate::ledger::writer`), and then this finds it held.
pub async fn insert_all(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    crate::store::tx::wait_at_ledger_gate(&mut *conn).await?;
    let users: Vec<UserId> = notifications.iter().map(|n| n.user_id).collect();
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
