//! The `installments` job: at 08:00 on business day D, every open fixed savings account takes
//! its installment for D from its owner's main account, topping up the shortfall against D's
//! limit; when the limit does not allow it, nothing moves, the miss is recorded on the account
//! and an `installment_failed` notification is written, and the other accounts go on.
//!
//! After downtime the run for the latest date takes every installment missed since the
//! account's last one, however long ago, oldest first: each for its own date, topped up
//! against that date's limit, or missed with its own notification. The runner runs only the
//! latest date; each account's `installment_through` says where it stands.
//!
//! Each installment is one [`Command::Installment`] through the ledger writer, which owns the
//! auto top-up and the limit, and marks the date on the account in the same transaction as the
//! money: an account whose installment for a date is done is refused a second one, so reruns,
//! a run resumed after a crash, and two processes never take it twice. The job only reads
//! which accounts are due (without locking them: the writer locks what it changes), and walks
//! each account's dates in order, many accounts at once.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName, Schedule};
use crate::domain::accounts::{AccountId, UserId};
use crate::domain::business_day::{business_date, first_of_month, first_of_next_month, local_instant};
use crate::ledger::{Command, CommandError, LedgerError, LedgerWriter, Outcome};
use crate::store::partitions;

/// Accounts walked at once (one command each in flight): two ledger batches' worth (256 each
/// by default), so that the next batch fills while the last one commits (a 400-day catch-up
/// ran 1.8 times as fast as with 256), and never enough to flood the writer's queue.
const IN_FLIGHT_MAX: usize = 512;

pub struct Installments;

#[derive(Debug, Default, Serialize)]
pub struct InstallmentTotals {
    pub taken: u64,
    pub missed: u64,
    /// Topped up into main accounts to fund installments, KRW.
    pub auto_charged_krw: i64,
}

/// Fixed savings accounts owing installments up to the date, after the cursor, with their
/// owners' main accounts, the last date each took, and when each was opened. An account opened
/// after a date's 08:00 starts the next day.
const DUE: &str = "SELECT s.id AS savings_account_id, s.user_id, m.id AS main_account_id, s.installment_through,
            s.opened_at
       FROM accounts s JOIN accounts m ON m.user_id = s.user_id AND m.kind = 'main'
      WHERE s.kind = 'savings' AND s.status = 'open' AND s.product = 'fixed'
        AND s.opened_at < $1 AND (s.installment_through IS NULL OR s.installment_through < $2)
        AND s.id > $3
      ORDER BY s.id
      LIMIT $4";

/// A fixed savings account [`DUE`] found.
#[derive(sqlx::FromRow)]
struct Due {
    savings_account_id: AccountId,
    user_id: UserId,
    main_account_id: AccountId,
    installment_through: Option<NaiveDate>,
    opened_at: DateTime<Utc>,
}

/// The first date whose installment an account opened at `opened_at` owes: the date of the
/// first `at` (08:00) after opening.
pub fn first_installment_date(opened_at: DateTime<Utc>, at: NaiveTime, tz: Tz) -> NaiveDate {
    let opened_on = business_date(opened_at, tz);
    if opened_at < local_instant(opened_on, at, tz) {
        opened_on
    } else {
        opened_on.succ_opt().unwrap_or(opened_on)
    }
}

/// One account's walk: its ids and the dates it owes, oldest first.
struct Owed {
    user_id: UserId,
    main_account_id: AccountId,
    savings_account_id: AccountId,
    first: NaiveDate,
    last: NaiveDate,
}

/// Takes (or records as missed) each installment an account owes, in date order. A date another
/// run took meanwhile is skipped; any other refusal (the account is no longer a fixed savings
/// account of its owner) ends the walk.
async fn walk(ledger: LedgerWriter, owed: Owed) -> anyhow::Result<InstallmentTotals> {
    let Owed { user_id, main_account_id, savings_account_id, first, last } = owed;
    let mut totals = InstallmentTotals::default();
    for date in first.iter_days().take_while(|date| *date <= last) {
        match ledger.submit(Command::Installment { user_id, main_account_id, savings_account_id, date }).await {
            Ok(Outcome::Installment { taken: true, auto_charged, .. }) => {
                totals.taken += 1;
                totals.auto_charged_krw += auto_charged;
            }
            Ok(Outcome::Installment { taken: false, .. }) => totals.missed += 1,
            // Done by another run meanwhile (or the account was closed meanwhile, which every
            // later date is then refused for too, at no cost but the commands).
            Err(LedgerError::Rejected(CommandError::InvalidState(_))) => {}
            // The account was closed or changed in between: nothing more to take.
            Err(LedgerError::Rejected(error)) => {
                tracing::info!(%error, %savings_account_id, "installment refused");
                break;
            }
            Ok(other) => return Err(other.unexpected()),
            // The rest is taken by the next run; what is done stays done.
            Err(error @ (LedgerError::Busy | LedgerError::Unavailable)) => return Err(error.into()),
        }
    }
    Ok(totals)
}

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
        let Schedule::Daily { at, .. } = self.schedule() else { anyhow::bail!("installments run daily") };
        let due: Vec<Due> = sqlx::query_as(DUE)
            .bind(ctx.due_at)
            .bind(ctx.business_date)
            .bind(cursor.unwrap_or(0))
            .bind(i64::try_from(ctx.chunk_size)?)
            .fetch_all(&mut *conn)
            .await?;
        let owed: Vec<Owed> = due
            .iter()
            .map(|account| Owed {
                user_id: account.user_id,
                main_account_id: account.main_account_id,
                savings_account_id: account.savings_account_id,
                first: match account.installment_through.and_then(|through| through.succ_opt()) {
                    Some(next) => next,
                    None => first_installment_date(account.opened_at, at, ctx.tz),
                },
                last: ctx.business_date,
            })
            .collect();
        // A top-up counts on its installment's date, whose month's daily counters may never
        // have been prepared (after a long outage) or were dropped by retention.
        if let Some(earliest) = owed.iter().map(|owed| owed.first).min() {
            let mut months = vec![first_of_month(earliest)];
            while let Some(next) =
                months.last().map(|month| first_of_next_month(*month)).filter(|m| *m <= ctx.business_date)
            {
                months.push(next);
            }
            partitions::ensure_months(ctx.pool, &months).await?;
        }
        // A walk starts as soon as another ends, so one long walk holds up no other.
        let mut processed = 0;
        let mut owed = owed.into_iter();
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while in_flight.len() < IN_FLIGHT_MAX {
                let Some(next) = owed.next() else { break };
                in_flight.spawn(walk(ledger.clone(), next));
            }
            let Some(joined) = in_flight.join_next().await else { break };
            let totals = joined??;
            report.taken += totals.taken;
            report.missed += totals.missed;
            report.auto_charged_krw += totals.auto_charged_krw;
            processed += totals.taken + totals.missed;
        }
        let last = due.last().map(|account| account.savings_account_id.get());
        Ok(Chunk { processed, cursor: last.or(cursor), finished: due.len() < ctx.chunk_size })
    }
}
