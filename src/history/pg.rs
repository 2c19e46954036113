//! Statement pages from PostgreSQL: the naive `OFFSET` page with its count, what a first
//! version would do, and the keyset page over `statement_entries_account_at`.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgConnection;

use super::entry::{page_of, Cursor, HistoryEntry, Page, PgEntry, TimeRange, PG_ENTRY_COLUMNS};

/// Bounds for PostgreSQL, where an open end becomes a far date (so partitions still prune).
pub(crate) fn pg_bounds(range: TimeRange) -> (DateTime<Utc>, DateTime<Utc>) {
    let far_past = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let far_future = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).single().unwrap_or_default();
    (range.from.unwrap_or(far_past), range.to.unwrap_or(far_future))
}

/// One OFFSET page, newest first, and the number of entries in the range.
pub async fn naive_page(
    conn: &mut PgConnection,
    account_id: i64,
    range: TimeRange,
    page: i64,
    limit: i64,
) -> anyhow::Result<(Vec<HistoryEntry>, i64)> {
    let (from, to) = pg_bounds(range);
    let rows: Vec<PgEntry> = sqlx::query_as(&format!(
        "SELECT {PG_ENTRY_COLUMNS} FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3
         ORDER BY at DESC, id DESC OFFSET $4 LIMIT $5"
    ))
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(page.saturating_mul(limit))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM statement_entries WHERE account_id = $1 AND at >= $2 AND at < $3")
            .bind(account_id)
            .bind(from)
            .bind(to)
            .fetch_one(&mut *conn)
            .await?;
    let entries = rows.into_iter().map(HistoryEntry::try_from).collect::<anyhow::Result<_>>()?;
    Ok((entries, total))
}

/// The tuned keyset page, answered by PostgreSQL.
pub async fn keyset_page(
    conn: &mut PgConnection,
    account_id: i64,
    range: TimeRange,
    cursor: Option<Cursor>,
    limit: i64,
) -> anyhow::Result<Page> {
    let (from, to) = pg_bounds(range);
    let (before_at, before_id) = match cursor {
        Some(cursor) => (
            DateTime::from_timestamp_micros(cursor.at_us).ok_or_else(|| anyhow::anyhow!("cursor time out of range"))?,
            cursor.id,
        ),
        None => (to, i64::MAX),
    };
    let rows: Vec<PgEntry> = sqlx::query_as(&format!(
        "SELECT {PG_ENTRY_COLUMNS} FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3 AND (at, id) < ($4, $5)
         ORDER BY at DESC, id DESC LIMIT $6"
    ))
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let entries = rows.into_iter().map(HistoryEntry::try_from).collect::<anyhow::Result<_>>()?;
    Ok(page_of(entries, limit))
}
