//! The `pending-expiry` job: every pending transfer past its `expires_at` is voided and its
//! amount released to the sender, with the refund's ledger row, statement entry (and outbox
//! row) and a `pending_transfer_expired` notification — set-based, a chunk per transaction.
//!
//! Each chunk first waits at the ledger writer's gate (`ledger_batch_gate`), so it never
//! interleaves with a batch: an accept racing the expiry either commits before the chunk (and
//! the chunk no longer sees the transfer as pending) or after it (and finds it expired). The
//! gate also puts the chunk's notifications in commit order with those of batches and split
//! bills (see [`crate::store::notifications`]). The job is idempotent by construction: it only
//! ever picks transfers still `pending`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::ledger::apply::PostingFlags;
use crate::ledger::writes::{self, Rows, Side};

pub struct PendingExpiry;

impl Job for PendingExpiry {
    type Report = ();

    fn name(&self) -> JobName {
        JobName::PendingExpiry
    }

    /// Each chunk holds the ledger gate while it runs, so the chunk size bounds how long live
    /// transfers wait behind the job.
    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        _cursor: Option<i64>,
        _report: &mut (),
    ) -> anyhow::Result<Chunk> {
        let expired = expire_chunk(conn, ctx.now, i64::try_from(ctx.chunk_size)?).await?;
        Ok(Chunk::after_batch(expired, ctx.chunk_size, None))
    }
}

/// One chunk, in one statement: pick due transfers, mark them expired, release the holds on
/// both accounts (summed per account, since an account can appear many times), write the
/// `void_pending` ledger rows, the senders' refund entries with their available balance after
/// each refund, the outbox rows and the notifications.
/// The ledger rows, the entries and their outbox row are the ledger's own writes
/// ([`crate::ledger::writes`]).
/// (The due ids go through an array so that the update reaches them through the primary key
/// instead of joining the whole table.)
static EXPIRE_CHUNK: LazyLock<String> = LazyLock::new(|| {
    let ledger = writes::ledger_rows(
        "$1",
        Rows {
            select: "from_account_id, to_account_id, amount, 'refund', 'void_pending', id, NULL::date",
            from: "due",
            order_by: "id",
        },
    );
    let entries = writes::entries_and_outbox(
        "$1",
        Rows {
            select: "r.from_account_id, 'in', r.amount, r.balance_after, 'refund', r.to_account_id, receiver.name, \
                     r.id, r.memo, receiver.name",
            from: "refunds r JOIN users receiver ON receiver.id = r.to_user_id",
            order_by: "r.id",
        },
    );
    format!(
        "WITH due AS (
        UPDATE transfers t SET status = 'expired', resolved_at = $1
         WHERE t.id = ANY(ARRAY(
                SELECT id FROM transfers
                 WHERE status = 'pending' AND expires_at <= $1
                 ORDER BY expires_at, id
                 LIMIT $2
                   FOR UPDATE SKIP LOCKED))
        RETURNING t.id, t.from_account_id, t.to_account_id, t.from_user_id, t.to_user_id, t.amount, t.memo
     ), released AS (
        SELECT account_id, sum(debit)::int8 AS debit, sum(credit)::int8 AS credit FROM (
            SELECT from_account_id AS account_id, amount AS debit, 0 AS credit FROM due
            UNION ALL
            SELECT to_account_id, 0, amount FROM due
        ) holds GROUP BY account_id
     ), updated AS (
        UPDATE accounts a
           SET {released_debits}, {released_credits}
          FROM released r WHERE a.id = r.account_id
        RETURNING a.id, {available} AS available
     ), {ledger}, refunds AS (
        -- The available balance after each refund: the final one, less the refunds of the
        -- same account that come after it.
        SELECT d.*, u.available - sum(d.amount) OVER (PARTITION BY d.from_account_id)
                                + sum(d.amount) OVER (PARTITION BY d.from_account_id ORDER BY d.id) AS balance_after
          FROM due d JOIN updated u ON u.id = d.from_account_id
     ), {entries}, notified AS (
        INSERT INTO notifications (user_id, kind, payload, created_at)
        SELECT from_user_id, 'pending_transfer_expired',
               jsonb_build_object('transfer_id', id, 'to_account_id', to_account_id, 'amount', amount, 'memo', memo),
               $1
          FROM due ORDER BY id
        RETURNING 1
     )
     SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM updated), (SELECT count(*) FROM ledger),
            (SELECT coalesce(sum(entries), 0) FROM outboxed), (SELECT count(*) FROM notified)",
        available = writes::available("a"),
        released_debits = writes::balance_moves(PostingFlags::VoidPending, Side::Debit, "a", "r.debit"),
        released_credits = writes::balance_moves(PostingFlags::VoidPending, Side::Credit, "a", "r.credit"),
    )
});

/// Expires one chunk in the caller's transaction; returns how many transfers it expired.
pub async fn expire_chunk(conn: &mut PgConnection, now: DateTime<Utc>, chunk_size: i64) -> anyhow::Result<u64> {
    crate::store::tx::wait_at_ledger_gate(&mut *conn).await?;
    let (expired, _, ledger, outboxed, notified): (i64, i64, i64, i64, i64) =
        sqlx::query_as(EXPIRE_CHUNK.as_str()).bind(now).bind(chunk_size).fetch_one(&mut *conn).await?;
    // Every expired transfer has its ledger row, refund entry and notification; anything else
    // fails the chunk, and the runner rolls it back.
    anyhow::ensure!(
        ledger == expired && outboxed == expired && notified == expired,
        "pending expiry wrote {ledger} ledger rows, {outboxed} entries and {notified} notifications for {expired} transfers"
    );
    Ok(expired as u64)
}
