//! Monthly partitions of the time-partitioned tables, created ahead of time (at start, when
//! the manual clock jumps, by the retention job, and by the ledger writer as a last resort).

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::domain::business_day::{first_of_month, first_of_next_month};

/// Tables partitioned by month, with the type of their partition key.
const MONTHLY_TABLES: [(&str, &str); 3] =
    [("ledger_transfers", "timestamptz"), ("daily_charges", "date"), ("statement_entries", "timestamptz")];

/// Months before the current one that are prepared too: a manual clock may start a little
/// in the past of what it later reads, and late rows of last month still need a home.
const MONTHS_BEHIND: u32 = 1;
/// Months after the current one prepared in advance.
pub const MONTHS_AHEAD: u32 = 2;

pub fn partition_name(table: &str, month: NaiveDate) -> String {
    format!("{table}_{}", month.format("y%Ym%m"))
}

/// Creates the partitions for the months around `date` that do not exist yet. Safe to call
/// from several processes at once (serialised by an advisory lock).
pub async fn ensure_around(pool: &PgPool, date: NaiveDate) -> sqlx::Result<()> {
    let mut month = first_of_month(date);
    for _ in 0..MONTHS_BEHIND {
        month = first_of_month(month.pred_opt().expect("dates have predecessors"));
    }
    let mut months = Vec::new();
    for _ in 0..(MONTHS_BEHIND + 1 + MONTHS_AHEAD) {
        months.push(month);
        month = first_of_next_month(month);
    }
    ensure_months(pool, &months).await
}

pub async fn ensure_months(pool: &PgPool, months: &[NaiveDate]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('minipay.partitions'))").execute(&mut *tx).await?;
    for &(table, key_type) in &MONTHLY_TABLES {
        for &month in months {
            let name = partition_name(table, month);
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&name).fetch_one(&mut *tx).await?;
            if exists {
                continue;
            }
            // Partition bounds of timestamptz tables are UTC month boundaries.
            let (from, to) = (first_of_month(month), first_of_next_month(month));
            let (from, to) = if key_type == "timestamptz" {
                (format!("{from} 00:00:00+00"), format!("{to} 00:00:00+00"))
            } else {
                (from.to_string(), to.to_string())
            };
            let sql = format!("CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{from}') TO ('{to}')");
            sqlx::query(&sql).execute(&mut *tx).await?;
            tracing::info!(partition = %name, "created partition");
        }
    }
    tx.commit().await
}
