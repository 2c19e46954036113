//! The `interest` job: at 04:00 on business day X+1, every open savings account is paid one
//! day of simple interest for day X on the principal it held at the end of X (interest already
//! paid earns nothing), from the system `interest` account, as a ledger transfer with its
//! statement entry.
//!
//! Set-based, a chunk of accounts per transaction: the chunk reads its accounts under the
//! ledger gate, the arithmetic is [`crate::domain::interest::daily_interest`], and one statement
//! writes balances, carries, the `interest_through` marker, ledger rows, entries and outbox rows.
//! The marker commits with the money, so a rerun (or a run after a crash between chunks) pays
//! nobody twice, and a run for a later date catches an account up date by date.
//!
//! The principal at the end of X is today's (balance − interest paid) less what came in after
//! X ended (deposits and installments, read from the account's statement entries). A deposit
//! made during X therefore earns for X, posted at 04:00 the next morning. An account closed
//! before the job runs was paid on closing what it was owed for the days not yet posted
//! (`CloseSavings`, with the same rules), and is not paid again.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::domain::accounts::INTEREST_ACCOUNT_ID;
use crate::domain::business_day::start_of_next_day;
use crate::domain::interest::daily_interest;

pub struct Interest;

#[derive(Debug, Default, Serialize)]
pub struct InterestTotals {
    /// Interest posted, KRW.
    pub posted_krw: i64,
}

impl Job for Interest {
    type Report = InterestTotals;

    fn name(&self) -> JobName {
        JobName::Interest
    }

    /// The run for business date D (from 04:00 on D) pays day D − 1.
    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        _cursor: Option<i64>,
        report: &mut InterestTotals,
    ) -> anyhow::Result<Chunk> {
        let day = ctx.business_date.pred_opt().ok_or_else(|| anyhow::anyhow!("no day before {}", ctx.business_date))?;
        let (accounts, posted) = pay_chunk(conn, ctx.tz, day, ctx.now, i64::try_from(ctx.chunk_size)?).await?;
        report.posted_krw += posted;
        Ok(Chunk::after_batch(accounts, ctx.chunk_size, None))
    }
}

/// Due accounts with their principal at the end of the date, in no particular order (each
/// account's marker, not the order, says what is done), found through `accounts_interest_due`.
const LOCK_DUE: &str = "SELECT a.id, a.interest_rate_bp, a.interest_carry,
            GREATEST(a.credits_posted - a.debits_posted - a.interest_paid - COALESCE((
                SELECT sum(e.amount) FROM statement_entries e
                 WHERE e.account_id = a.id AND e.at >= $2 AND e.direction = 'in' AND e.kind IN ('deposit', 'installment')
            ), 0), 0)::int8 AS principal
       FROM accounts a
      WHERE a.kind = 'savings' AND a.status = 'open' AND a.opened_at < $2
        AND COALESCE(a.interest_through, '-infinity'::date) < $1
      LIMIT $3
        FOR UPDATE SKIP LOCKED";

/// Everything one chunk writes. $1 the date, $2 the job's time, then per account: id,
/// interest, new carry.
const PAY: &str = "WITH paid AS (
        SELECT * FROM UNNEST($3::int8[], $4::int8[], $5::int8[]) AS p(id, interest, carry)
     ), updated AS (
        UPDATE accounts a
           SET credits_posted = a.credits_posted + p.interest, interest_paid = a.interest_paid + p.interest,
               interest_carry = p.carry, interest_through = $1
          FROM paid p WHERE a.id = p.id
        RETURNING a.id, p.interest, a.credits_posted - a.debits_posted - a.debits_pending AS available
     ), source AS (
        UPDATE accounts SET debits_posted = debits_posted + (SELECT COALESCE(sum(interest), 0) FROM paid)
         WHERE id = $6
        RETURNING 1
     ), ledger AS (
        INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags)
        SELECT nextval('ledger_transfers_id_seq'), $2, $6, id, interest, 'interest', 'posted'
          FROM updated WHERE interest > 0 ORDER BY id
        RETURNING 1
     ), entries AS (
        INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                                       counterparty_account_id, counterparty_name, transfer_id, memo)
        SELECT nextval('statement_entries_id_seq'), id, $2, 'in', interest, available, 'interest',
               NULL, 'interest', NULL, NULL
          FROM updated WHERE interest > 0 ORDER BY id
        RETURNING id
     ), outboxed AS (
        INSERT INTO statement_outbox (entry_ids, at)
        SELECT array_agg(id ORDER BY id), $2 FROM entries HAVING count(*) > 0
        RETURNING cardinality(entry_ids) AS entries
     )
     SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM source), (SELECT count(*) FROM ledger),
            (SELECT coalesce(sum(entries), 0) FROM outboxed)";

/// Pays one chunk of accounts for `date` in the caller's transaction; returns (accounts, KRW),
/// (0, 0) when none is due.
pub async fn pay_chunk(
    conn: &mut PgConnection,
    tz: Tz,
    date: NaiveDate,
    now: DateTime<Utc>,
    chunk_size: i64,
) -> anyhow::Result<(u64, i64)> {
    let day_end = start_of_next_day(date, tz);
    crate::store::tx::wait_at_ledger_gate(&mut *conn).await?;
    let due: Vec<(i64, Option<i32>, i64, i64)> =
        sqlx::query_as(LOCK_DUE).bind(date).bind(day_end).bind(chunk_size).fetch_all(&mut *conn).await?;
    if due.is_empty() {
        return Ok((0, 0));
    }
    let mut ids = Vec::with_capacity(due.len());
    let mut interests = Vec::with_capacity(due.len());
    let mut carries = Vec::with_capacity(due.len());
    for (id, rate_bp, carry, principal) in due {
        let day = daily_interest(principal, rate_bp.unwrap_or(0), carry)
            .ok_or_else(|| anyhow::anyhow!("interest for account {id} is out of range"))?;
        ids.push(id);
        interests.push(day.posted);
        carries.push(day.carry);
    }
    let total: i64 = interests.iter().sum();
    let paying = interests.iter().filter(|interest| **interest > 0).count() as i64;
    let (updated, source, ledger, outboxed): (i64, i64, i64, i64) = sqlx::query_as(PAY)
        .bind(date)
        .bind(now)
        .bind(&ids)
        .bind(&interests)
        .bind(&carries)
        .bind(INTEREST_ACCOUNT_ID)
        .fetch_one(&mut *conn)
        .await?;
    anyhow::ensure!(
        updated == ids.len() as i64 && source == 1 && ledger == paying && outboxed == paying,
        "interest chunk wrote {updated} accounts, {ledger} ledger rows and {outboxed} entries for {} accounts",
        ids.len()
    );
    Ok((ids.len() as u64, total))
}
