//! Notifications, written in the same transaction as the change that causes them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::accounts::UserId;
pub use crate::domain::notifications::{NewNotification, NotificationKind};

/// Inserts the notifications, all created at `at`, in one statement.
pub async fn insert_many(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
    at: DateTime<Utc>,
) -> sqlx::Result<u64> {
    if notifications.is_empty() {
        return Ok(0);
    }
    let user_ids: Vec<UserId> = notifications.iter().map(|notification| notification.user_id).collect();
    let kinds: Vec<&str> = notifications.iter().map(|notification| notification.kind.as_str()).collect();
    let payloads: Vec<serde_json::Value> =
        notifications.iter().map(|notification| notification.payload.clone()).collect();
    let inserted = sqlx::query(
        "INSERT INTO notifications (user_id, kind, payload, created_at)
         SELECT user_id, kind, payload, $4 FROM UNNEST($1::int8[], $2::text[], $3::jsonb[]) AS n (user_id, kind, payload)",
    )
    .bind(&user_ids)
    .bind(&kinds)
    .bind(&payloads)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted)
}
