//! The `retention` job: statements and ledger rows are kept for one year. Whole months older
//! than that are dropped in both stores (their ledger totals folded into
//! `ledger_archived_totals` first, so the audit still balances every account), and the
//! partitions of the coming months are created. Reads never reach past the year either
//! (see `oldest_kept`), so a month that straddles the boundary is gone to readers before it
//! is dropped.
//!
//! It runs daily at 03:00 through the job runner, as one chunk: dropping a partition is
//! idempotent, and what is older than a year as of the latest date covers every missed date,
//! so it catches up only that one. When ClickHouse is unreachable its partitions wait for the
//! next day's run (where the server has TTL, they expire meanwhile anyway).

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::{Chunk, Job, JobContext, JobName};
use crate::domain::business_day::{first_of_month, first_of_next_month};
use crate::history::clickhouse::ClickHouse;
use crate::store::partitions;

/// How far back statements are kept.
pub const RETENTION_MONTHS: u32 = 12;

/// The oldest instant still kept at `now`.
pub fn oldest_kept(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(RETENTION_MONTHS)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionReport {
    pub job: &'static str,
    /// Partitions dropped in both stores.
    pub processed: usize,
    pub dropped_postgres: Vec<String>,
    pub dropped_clickhouse: Vec<String>,
    /// `null` when ClickHouse was reachable; otherwise why its partitions were left for the
    /// next run.
    pub clickhouse_error: Option<String>,
}

/// The job, as the runner runs it.
pub struct Retention;

/// What a run of `retention` reports beside `job` and `processed`.
#[derive(Debug, Default, Serialize)]
pub struct RetentionDetails {
    pub dropped_postgres: Vec<String>,
    pub dropped_clickhouse: Vec<String>,
    /// `null` when ClickHouse was reachable; otherwise why its partitions were left.
    pub clickhouse_error: Option<String>,
}

impl Job for Retention {
    type Report = RetentionDetails;

    fn name(&self) -> JobName {
        JobName::Retention
    }

    /// The whole job in one chunk. It works through the pool (DDL, ClickHouse), not the
    /// chunk's transaction: every step is safe to repeat after a crash.
    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        _conn: &mut PgConnection,
        _cursor: Option<i64>,
        report: &mut RetentionDetails,
    ) -> anyhow::Result<Chunk> {
        // The clock's now rather than the date's 03:00: reads already hide what is older than a
        // year as of now, and the stores should follow them.
        let run = run(ctx.pool, ctx.clickhouse, ctx.now, ctx.business_date).await?;
        report.dropped_postgres.extend(run.dropped_postgres);
        report.dropped_clickhouse.extend(run.dropped_clickhouse);
        if run.clickhouse_error.is_some() {
            report.clickhouse_error = run.clickhouse_error;
        }
        Ok(Chunk::finished(run.processed as u64))
    }
}

/// The first instant (UTC) after the month that starts on `month`.
fn month_end(month: NaiveDate) -> DateTime<Utc> {
    first_of_next_month(month).and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Months (first days) whose whole range lies before `cutoff`.
fn expired(month: NaiveDate, cutoff: DateTime<Utc>) -> bool {
    month_end(month) <= cutoff
}

/// The months of a table's monthly partitions, from their names (`table_yYYYYmMM`).
async fn partition_months(pool: &PgPool, table: &str) -> sqlx::Result<Vec<(String, NaiveDate)>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::regclass ORDER BY 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let suffix = name.strip_prefix(table)?.strip_prefix("_y")?;
            let (year, month) = suffix.split_once('m')?;
            let month = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
            Some((name, month))
        })
        .collect())
}

pub async fn run(
    pool: &PgPool,
    clickhouse: &ClickHouse,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> anyhow::Result<RetentionReport> {
    partitions::ensure_around(pool, today).await?;
    let cutoff = oldest_kept(now);
    let mut dropped_postgres = Vec::new();

    for (name, month) in partition_months(pool, "ledger_transfers").await? {
        if expired(month, cutoff) {
            archive_ledger_partition(pool, &name).await?;
            dropped_postgres.push(name);
        }
    }

    for table in ["statement_entries", "daily_charges"] {
        for (name, month) in partition_months(pool, table).await? {
            if expired(month, cutoff) {
                drop_partition(pool, table, &name, month).await?;
                dropped_postgres.push(name);
            }
        }
    }

    let (dropped_clickhouse, clickhouse_error) = match drop_clickhouse_partitions(clickhouse, cutoff).await {
        Ok(dropped) => (dropped, None),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "retention: ClickHouse partitions left for the next run");
            (Vec::new(), Some(format!("{error:#}")))
        }
    };
    Ok(RetentionReport {
        job: "retention",
        processed: dropped_postgres.len() + dropped_clickhouse.len(),
        dropped_postgres,
        dropped_clickhouse,
        clickhouse_error,
    })
}

/// Detaches the expired partition `name` of `ledger_transfers`, folds it into the archived
/// totals and drops it: all or nothing. An account may have no row of a kind in a month (only
/// held or voided transfers, only debits, only credits): such a sum is NULL in SQL and counts
/// as 0.
async fn archive_ledger_partition(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("ALTER TABLE ledger_transfers DETACH PARTITION {name}")).execute(&mut *tx).await?;
    sqlx::query(&format!(
        "INSERT INTO ledger_archived_totals AS t (account_id, debits_posted, credits_posted, debits_pending, credits_pending)
         SELECT account_id, sum(debits_posted), sum(credits_posted), sum(debits_pending), sum(credits_pending) FROM (
             SELECT debit_account_id AS account_id,
                    COALESCE(sum(amount) FILTER (WHERE flags IN ('posted', 'post_pending')), 0) AS debits_posted,
                    0 AS credits_posted,
                    sum(CASE flags WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END) AS debits_pending,
                    0 AS credits_pending
               FROM {name} GROUP BY debit_account_id
             UNION ALL
             SELECT credit_account_id, 0, COALESCE(sum(amount) FILTER (WHERE flags IN ('posted', 'post_pending')), 0), 0,
                    sum(CASE flags WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END)
               FROM {name} GROUP BY credit_account_id
         ) moved GROUP BY account_id
         ON CONFLICT (account_id) DO UPDATE SET
             debits_posted = t.debits_posted + EXCLUDED.debits_posted,
             credits_posted = t.credits_posted + EXCLUDED.credits_posted,
             debits_pending = t.debits_pending + EXCLUDED.debits_pending,
             credits_pending = t.credits_pending + EXCLUDED.credits_pending"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Drops the expired partition `name` of `table` (for `statement_entries`, with the outbox
/// rows of its month).
async fn drop_partition(pool: &PgPool, table: &str, name: &str, month: NaiveDate) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    if table == "statement_entries" {
        // Entries that will never reach ClickHouse now must not hold the lag up.
        sqlx::query("DELETE FROM statement_outbox WHERE at < $1").bind(month_end(month)).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Drops ClickHouse's monthly partitions (`toYYYYMM(at)`) that lie wholly before `cutoff`.
/// On servers with TTL this only frees space sooner.
async fn drop_clickhouse_partitions(clickhouse: &ClickHouse, cutoff: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let partitions = crate::history::aggregates::entry_partitions(clickhouse).await?;
    let mut dropped = Vec::new();
    for partition in partitions {
        let month = partition
            .trim_matches('\'')
            .parse::<u32>()
            .ok()
            .and_then(|yyyymm| NaiveDate::from_ymd_opt((yyyymm / 100) as i32, yyyymm % 100, 1));
        let Some(month) = month else { continue };
        if expired(first_of_month(month), cutoff) {
            let id = month.format("%Y%m").to_string();
            crate::history::aggregates::drop_month(clickhouse, &id).await?;
            dropped.push(id);
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_expires_once_it_ends_before_the_cutoff() {
        let now: DateTime<Utc> = "2027-11-24T00:00:00Z".parse().unwrap();
        let cutoff = oldest_kept(now);
        assert_eq!(cutoff, "2026-11-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(expired(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(), cutoff));
        assert!(!expired(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), cutoff));
    }
}
