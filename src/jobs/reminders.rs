//! The `reminders` job: 24 hours before a pending transfer expires (48 hours after it was
//! sent), its receiver gets exactly one `pending_transfer_reminder`.
//!
//! A chunk waits at the ledger gate, then locks the due transfers (`FOR UPDATE SKIP LOCKED`,
//! so concurrent runs share them), inserts one notification per transfer and sets
//! `reminded_at`, all in the chunk's transaction: a transfer is reminded of together with its
//! notification or not at all, and never again. Transfers that are no longer pending, or have
//! already expired (the expiry job may not have caught up with them yet), get none; nor do
//! those whose receiver has blocked the sender since (they are marked reminded all the same,
//! so a later unblock does not bring the reminder back).
//!
//! The gate comes first, as everywhere (see the lock order in [`crate::ledger::writer`]): the
//! notifications need it (their ids commit in order with those of batches and split bills, see
//! [`crate::store::notifications`]), and a chunk that locked transfers before waiting for it
//! could wait for a batch that waits for those transfers (one that resolves them), a deadlock.

use serde_json::json;
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::domain::accounts::UserId;
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::transfers::REMINDER_BEFORE_EXPIRY;
use crate::store::notifications;
use crate::store::social;
use crate::store::transfers;

pub struct Reminders;

impl Job for Reminders {
    type Report = ();

    fn name(&self) -> JobName {
        JobName::Reminders
    }

    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        _cursor: Option<i64>,
        _report: &mut (),
    ) -> anyhow::Result<Chunk> {
        let limit = i64::try_from(ctx.chunk_size)?;
        crate::store::tx::wait_at_ledger_gate(&mut *conn).await?;
        let due = transfers::lock_due_reminders(conn, ctx.now, REMINDER_BEFORE_EXPIRY, limit).await?;
        let pairs: Vec<(UserId, UserId)> =
            due.iter().map(|transfer| (transfer.to_user_id, transfer.from_user_id)).collect();
        let blocked = social::blocked(conn, &pairs).await?;
        let reminders: Vec<NewNotification> = due
            .iter()
            .zip(blocked)
            .filter(|(_, blocked)| !blocked)
            .map(|(transfer, _)| NewNotification {
                user_id: transfer.to_user_id,
                kind: NotificationKind::PendingTransferReminder,
                payload: json!({
                    "transfer_id": transfer.id,
                    "from_user_id": transfer.from_user_id,
                    "amount": transfer.amount,
                    "expires_at": transfer.expires_at,
                }),
            })
            .collect();
        let ids: Vec<i64> = due.iter().map(|transfer| transfer.id.get()).collect();
        let marked = transfers::mark_reminded(conn, &ids, ctx.now).await?;
        // The rows are locked by this transaction and were selected unreminded.
        assert_eq!(marked as usize, ids.len(), "a locked transfer was reminded of under its lock");
        // It takes the receivers' recipient locks too, which under the gate taken above no batch
        // and no other writer of notifications holds: notification ids commit in order.
        notifications::insert_all(conn, &reminders, ctx.now).await?;
        Ok(Chunk::after_batch(ids.len() as u64, ctx.chunk_size, None))
    }
}
