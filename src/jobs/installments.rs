//! The `installments` job: at 08:00 on business day D, every open fixed savings account takes
//! its installment for D from its owner's main account, topping up the shortfall against D's
//! limit; when the limit does not allow it, nothing moves, the miss is recorded on the account
//! and an `installment_failed` notification is written, and the other accounts go on.
//!
//! Each installment is one [`Command::Installment`] through the ledger writer, which owns the
//! auto top-up and the limit, and marks the date on the account in the same transaction as the
//! money: an account whose installment for D is done is refused a second one, so reruns, a run
//! resumed after a crash, and two processes never take it twice. The job only reads which
//! accounts are due (without locking them: the writer locks what it changes).

use serde::Serialize;
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::ledger::{Command, CommandError, LedgerError, Outcome};

/// Commands in flight at once, so that a chunk never floods the writer's queue.
const IN_FLIGHT_MAX: usize = 256;

pub struct Installments;

#[derive(Debug, Default, Serialize)]
pub struct InstallmentTotals {
    pub taken: u64,
    pub missed: u64,
    /// Topped up into main accounts to fund installments, KRW.
    pub auto_charged_krw: i64,
}

/// Fixed savings accounts owing the installment for the date, after the cursor, with their
/// owners' main accounts. An account opened after the date's 08:00 starts the next day.
const DUE: &str = "SELECT s.id, s.user_id, m.id
       FROM accounts s JOIN accounts m ON m.user_id = s.user_id AND m.kind = 'main'
      WHERE s.kind = 'savings' AND s.status = 'open' AND s.product = 'fixed'
        AND s.opened_at < $1 AND (s.installment_through IS NULL OR s.installment_through < $2)
        AND s.id > $3
      ORDER BY s.id
      LIMIT $4";

impl Job for Installments {
    type Report = InstallmentTotals;

    fn name(&self) -> JobName {
        JobName::Installments
    }

    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        cursor: Option<i64>,
        report: &mut InstallmentTotals,
    ) -> anyhow::Result<Chunk> {
        let ledger = ctx.ledger.ok_or_else(|| anyhow::anyhow!("installments need the ledger writer"))?;
        let due: Vec<(i64, i64, i64)> = sqlx::query_as(DUE)
            .bind(ctx.due_at)
            .bind(ctx.business_date)
            .bind(cursor.unwrap_or(0))
            .bind(i64::try_from(ctx.chunk_size)?)
            .fetch_all(&mut *conn)
            .await?;
        let mut processed = 0;
        for group in due.chunks(IN_FLIGHT_MAX) {
            let mut in_flight = tokio::task::JoinSet::new();
            for &(savings_account_id, user_id, main_account_id) in group {
                let ledger = ledger.clone();
                let date = ctx.business_date;
                in_flight.spawn(async move {
                    ledger.submit(Command::Installment { user_id, main_account_id, savings_account_id, date }).await
                });
            }
            while let Some(joined) = in_flight.join_next().await {
                let result = joined?;
                match result {
                    Ok(Outcome::Installment { taken: true, auto_charged, .. }) => {
                        report.taken += 1;
                        report.auto_charged_krw += auto_charged;
                        processed += 1;
                    }
                    Ok(Outcome::Installment { taken: false, .. }) => {
                        report.missed += 1;
                        processed += 1;
                    }
                    // Done by another run meanwhile.
                    Err(LedgerError::Rejected(CommandError::InvalidState(_))) => {}
                    // The account was closed or changed in between: nothing to take.
                    Err(LedgerError::Rejected(error)) => tracing::info!(%error, "installment refused"),
                    Ok(other) => anyhow::bail!("unexpected ledger outcome {other:?}"),
                    // The rest is taken by the next run; what is done stays done.
                    Err(error @ (LedgerError::Busy | LedgerError::Unavailable)) => return Err(error.into()),
                }
            }
        }
        let last = due.last().map(|(id, _, _)| *id);
        Ok(Chunk { processed, cursor: last.or(cursor), finished: due.len() < ctx.chunk_size })
    }
}
