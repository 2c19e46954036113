//! The `interest` job: at 04:00 on business day X+1, every open savings account is paid the
//! simple interest of every business day up to X not yet paid (normally day X alone; after
//! downtime, every day since it was last paid, however long ago), each day on the principal it
//! held at the end of that day (interest already paid earns nothing), from the system
//! `interest` account, as one ledger transfer with one statement entry whose memo names the
//! days.
//!
//! So the run for the latest date covers every missed one, account by account, from each
//! account's own `interest_through` marker, and the runner runs only that date: a gap of 400
//! days costs one pass over the accounts, not 400.
//!
//! Set-based, a chunk of accounts per transaction: the chunk reads its accounts under the
//! ledger gate, the arithmetic is [`crate::domain::interest::owed_interest`] (the rules closing
//! an account uses too), and one statement writes balances, carries, the marker, ledger rows,
//! entries and outbox rows. The marker commits with the money, so a rerun (or a run after a
//! crash between chunks) pays nobody twice.
//!
//! The principal at the end of day X is today's (balance − interest paid) less what came in
//! after X ended (deposits and installments, read from the account's statement entries). A
//! deposit made during X therefore earns for X, posted at 04:00 the next morning; a missed
//! installment caught up later earns from the day it is booked. An account closed before the
//! job runs was paid what it was owed on closing, and is not paid again.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::LazyLock;

use super::{Chunk, Job, JobContext, JobName};
use crate::domain::accounts::INTEREST_ACCOUNT_ID;
use crate::domain::business_day::{business_date, start_of_next_day};
use crate::domain::interest::{days_memo, first_day_owed, owed_interest};
use crate::ledger::apply::PostingFlags;
use crate::ledger::writes::{self, Rows, Side};

pub struct Interest;

#[derive(Debug, Default, Serialize)]
pub struct InterestTotals {
    /// Interest posted, KRW.
    pub posted_krw: i64,
    /// Days paid, summed over the accounts (an account caught up after 40 days counts 40).
    pub account_days: i64,
}

impl Job for Interest {
    type Report = InterestTotals;

    fn name(&self) -> JobName {
        JobName::Interest
    }

    /// The run for business date D (from 04:00 on D) pays every day up to D − 1.
    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        _cursor: Option<i64>,
        report: &mut InterestTotals,
    ) -> anyhow::Result<Chunk> {
        let day = ctx.business_date.pred_opt().ok_or_else(|| anyhow::anyhow!("no day before {}", ctx.business_date))?;
        let paid = pay_chunk(conn, ctx.tz, day, ctx.now, i64::try_from(ctx.chunk_size)?).await?;
        report.posted_krw += paid.posted_krw;
        report.account_days += paid.account_days;
        Ok(Chunk::after_batch(paid.accounts, ctx.chunk_size, None))
    }
}

/// Due accounts (not paid through the date), with what earns now, in no particular order (each
/// account's marker, not the order, says what is done), found through `accounts_interest_due`.
const LOCK_DUE: &str = "SELECT a.id, a.interest_rate_bp, a.interest_carry, a.interest_through, a.opened_at,
            (a.credits_posted - a.debits_posted - a.interest_paid)::int8 AS principal
       FROM accounts a
      WHERE a.kind = 'savings' AND a.status = 'open' AND a.opened_at < $2
        AND COALESCE(a.interest_through, '-infinity'::date) < $1
      LIMIT $3
        FOR UPDATE SKIP LOCKED";

/// An account [`LOCK_DUE`] found, with what earns now (`principal`).
#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    interest_rate_bp: Option<i32>,
    interest_carry: i64,
    interest_through: Option<NaiveDate>,
    opened_at: DateTime<Utc>,
    principal: i64,
}

/// What came into each account ($1) from the end of its first day owed ($2) on: the inflows
/// that the principal of some day owed does not include yet.
const INFLOWS: &str = "SELECT e.account_id, e.at, e.amount
       FROM UNNEST($1::int8[], $2::timestamptz[]) AS d(id, since)
       JOIN statement_entries e ON e.account_id = d.id AND e.at >= d.since
      WHERE e.direction = 'in' AND e.kind IN ('deposit', 'installment')";

/// Everything one chunk writes. $1 the last day paid, $2 the job's time, then per account: id,
/// interest, new carry, memo; $6 the `interest` account. The ledger rows, the entries and their
/// outbox row are the ledger's own writes ([`crate::ledger::writes`]).
static PAY: LazyLock<String> = LazyLock::new(|| {
    let paying = "updated WHERE interest > 0";
    let ledger = writes::ledger_rows(
        "$2",
        Rows { select: "$6, id, interest, 'interest', 'posted', NULL::int8, NULL::date", from: paying, order_by: "id" },
    );
    let entries = writes::entries_and_outbox(
        "$2",
        Rows {
            select: "id, 'in', interest, available, 'interest', NULL::int8, 'interest', NULL::int8, memo, NULL::text",
            from: paying,
            order_by: "id",
        },
    );
    format!(
        "WITH paid AS (
        SELECT * FROM UNNEST($3::int8[], $4::int8[], $5::int8[], $7::text[]) AS p(id, interest, carry, memo)
     ), updated AS (
        UPDATE accounts a
           SET {credited}, interest_paid = a.interest_paid + p.interest,
               interest_carry = p.carry, interest_through = $1
          FROM paid p WHERE a.id = p.id
        RETURNING a.id, p.interest, p.memo, {available} AS available
     ), source AS (
        UPDATE accounts s SET {debited}
         WHERE s.id = $6
        RETURNING 1
     ), {ledger}, {entries}
     SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM source), (SELECT count(*) FROM ledger),
            (SELECT coalesce(sum(entries), 0) FROM outboxed)",
        available = writes::available("a"),
        credited = writes::balance_moves(PostingFlags::Posted, Side::Credit, "a", "p.interest"),
        debited = writes::balance_moves(
            PostingFlags::Posted,
            Side::Debit,
            "s",
            "(SELECT COALESCE(sum(interest), 0) FROM paid)"
        ),
    )
});

/// What one chunk paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkPaid {
    pub accounts: u64,
    pub posted_krw: i64,
    pub account_days: i64,
}

/// Pays one chunk of accounts every day owed up to `last` in the caller's transaction; nothing
/// when none is due.
pub async fn pay_chunk(
    conn: &mut PgConnection,
    tz: Tz,
    last: NaiveDate,
    now: DateTime<Utc>,
    chunk_size: i64,
) -> anyhow::Result<ChunkPaid> {
    crate::store::tx::wait_at_ledger_gate(&mut *conn).await?;
    let due: Vec<Due> = sqlx::query_as(LOCK_DUE)
        .bind(last)
        .bind(start_of_next_day(last, tz))
        .bind(chunk_size)
        .fetch_all(&mut *conn)
        .await?;
    if due.is_empty() {
        return Ok(ChunkPaid::default());
    }
    let firsts: Vec<NaiveDate> = due
        .iter()
        .map(|account| first_day_owed(account.interest_through, business_date(account.opened_at, tz)))
        .collect();
    let ids: Vec<i64> = due.iter().map(|account| account.id).collect();
    let since: Vec<DateTime<Utc>> = firsts.iter().map(|first| start_of_next_day(*first, tz)).collect();
    let rows: Vec<(i64, DateTime<Utc>, i64)> =
        sqlx::query_as(INFLOWS).bind(&ids).bind(&since).fetch_all(&mut *conn).await?;
    let mut inflows: HashMap<i64, Vec<(NaiveDate, i64)>> = HashMap::new();
    for (id, at, amount) in rows {
        inflows.entry(id).or_default().push((business_date(at, tz), amount));
    }

    let mut interests = Vec::with_capacity(due.len());
    let mut carries = Vec::with_capacity(due.len());
    let mut memos = Vec::with_capacity(due.len());
    let mut paid = ChunkPaid { accounts: due.len() as u64, ..ChunkPaid::default() };
    for (account, first) in due.iter().zip(&firsts) {
        let came_in = inflows.get(&account.id).map(Vec::as_slice).unwrap_or_default();
        let rate_bp = account.interest_rate_bp.unwrap_or(0);
        let owed = owed_interest(account.principal, came_in, *first, last, rate_bp, account.interest_carry)
            .ok_or_else(|| anyhow::anyhow!("interest for account {} is out of range", account.id))?;
        interests.push(owed.posted);
        carries.push(owed.carry);
        memos.push(days_memo(*first, last));
        paid.posted_krw += owed.posted;
        paid.account_days += (last - *first).num_days() + 1;
    }
    let paying = interests.iter().filter(|interest| **interest > 0).count() as i64;
    let (updated, source, ledger, outboxed): (i64, i64, i64, i64) = sqlx::query_as(PAY.as_str())
        .bind(last)
        .bind(now)
        .bind(&ids)
        .bind(&interests)
        .bind(&carries)
        .bind(INTEREST_ACCOUNT_ID)
        .bind(&memos)
        .fetch_one(&mut *conn)
        .await?;
    anyhow::ensure!(
        updated == ids.len() as i64 && source == 1 && ledger == paying && outboxed == paying,
        "interest chunk wrote {updated} accounts, {ledger} ledger rows and {outboxed} entries for {} accounts",
        ids.len()
    );
    Ok(paid)
}
