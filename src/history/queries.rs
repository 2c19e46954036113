//! History queries, two ways with the same answers.
//!
//! - naive: PostgreSQL, `OFFSET` paging and a `count(*)`, what a first version would do;
//! - tuned: ClickHouse, newest first with a keyset cursor over (at_us, entry_id), only the
//!   needed columns, `at` bounds for partition pruning, and replays removed with
//!   `LIMIT 1 BY entry_id` (`FINAL` is far too slow for pages). ClickHouse 18.16 cannot read
//!   in key order for `ORDER BY ... DESC LIMIT`, so a page reads every matching row of its time
//!   window: pages are looked for in widening windows (3 days, 30 days, a year, then the rest)
//!   back from the cursor, `to`, or now.
//! - fallback: the tuned keyset query on PostgreSQL, for when ClickHouse is unreachable.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgConnection;

use super::clickhouse::ClickHouse;
use super::forwarder::{PgEntry, DIRECTION_IN, DIRECTION_OUT};

/// Counterparties listed in a summary.
pub const TOP_COUNTERPARTIES_MAX: i64 = 10;
/// Widths of the time windows a tuned page is looked for in, before the unbounded rest.
const WINDOW_WIDTHS_US: [i64; 3] = [3 * DAY_US, 30 * DAY_US, 365 * DAY_US];
const DAY_US: i64 = 86_400 * 1_000_000;

/// A statement entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub account_id: i64,
    pub direction: &'static str,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: String,
    pub transfer_id: Option<i64>,
    /// An empty memo is no memo, in both stores.
    pub memo: Option<String>,
}

impl HistoryEntry {
    pub fn cursor(&self) -> Cursor {
        Cursor { at_us: self.at.timestamp_micros(), id: self.id }
    }
}

fn direction_name(text: &str) -> anyhow::Result<&'static str> {
    match text {
        "in" => Ok("in"),
        "out" => Ok("out"),
        other => anyhow::bail!("unknown direction {other:?}"),
    }
}

fn non_empty(memo: Option<String>) -> Option<String> {
    memo.filter(|memo| !memo.is_empty())
}

impl TryFrom<PgEntry> for HistoryEntry {
    type Error = anyhow::Error;

    fn try_from(entry: PgEntry) -> anyhow::Result<Self> {
        Ok(HistoryEntry {
            id: entry.id,
            at: entry.at,
            account_id: entry.account_id,
            direction: direction_name(&entry.direction)?,
            amount: entry.amount,
            balance_after: entry.balance_after,
            kind: entry.kind,
            counterparty_account_id: entry.counterparty_account_id,
            counterparty_name: entry.counterparty_name,
            transfer_id: entry.transfer_id,
            memo: non_empty(entry.memo),
        })
    }
}

/// `from` inclusive, `to` exclusive; either may be open.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Bounds for PostgreSQL, where an open end becomes a far date (so partitions still prune).
fn pg_bounds(range: TimeRange) -> (DateTime<Utc>, DateTime<Utc>) {
    let far_past = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let far_future = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).single().unwrap_or_default();
    (range.from.unwrap_or(far_past), range.to.unwrap_or(far_future))
}

/// The last entry of a page: the next page holds what sorts after it (older, or as old with
/// a smaller id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("h{}.{}", self.at_us, self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (at_us, id) = text.strip_prefix('h')?.split_once('.')?;
        let cursor = Cursor { at_us: at_us.parse().ok()?, id: id.parse().ok()? };
        (cursor.at_us >= 0 && cursor.id > 0).then_some(cursor)
    }
}

pub struct Page {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<Cursor>,
}

fn page_of(mut entries: Vec<HistoryEntry>, limit: i64) -> Page {
    let limit = limit.max(0) as usize;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(HistoryEntry::cursor)
    } else {
        None
    };
    Page { entries, next }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub name: String,
    pub in_total: i64,
    pub out_total: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub in_total: i64,
    pub out_total: i64,
    /// By kind name (byte order).
    pub by_kind: Vec<Totals>,
    /// The most frequent counterparty names, ties by name (byte order).
    pub top_counterparties: Vec<Totals>,
}

impl Summary {
    fn from_parts(by_kind: Vec<Totals>, top_counterparties: Vec<Totals>) -> Self {
        let in_total = by_kind.iter().map(|kind| kind.in_total).sum();
        let out_total = by_kind.iter().map(|kind| kind.out_total).sum();
        Summary { in_total, out_total, by_kind, top_counterparties }
    }
}

// --- naive: PostgreSQL, OFFSET and count ---------------------------------------------------

const PG_ENTRY_COLUMNS: &str =
    "id, account_id, at, direction, amount, balance_after, kind, counterparty_account_id, counterparty_name, transfer_id, memo";

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
pub async fn fallback_page(
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

#[derive(sqlx::FromRow)]
struct PgTotals {
    name: String,
    in_total: i64,
    out_total: i64,
    count: i64,
}

impl From<PgTotals> for Totals {
    fn from(row: PgTotals) -> Self {
        Totals { name: row.name, in_total: row.in_total, out_total: row.out_total, count: row.count }
    }
}

pub async fn naive_summary(conn: &mut PgConnection, account_id: i64, range: TimeRange) -> anyhow::Result<Summary> {
    let (from, to) = pg_bounds(range);
    let by_kind: Vec<PgTotals> = sqlx::query_as(
        "SELECT kind AS name,
                coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                count(*) AS count
         FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3
         GROUP BY kind
         ORDER BY kind COLLATE \"C\"",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let top: Vec<PgTotals> = sqlx::query_as(
        "SELECT counterparty_name AS name,
                coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                count(*) AS count
         FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3
         GROUP BY counterparty_name
         ORDER BY count(*) DESC, counterparty_name COLLATE \"C\"
         LIMIT $4",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(TOP_COUNTERPARTIES_MAX)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Summary::from_parts(
        by_kind.into_iter().map(Totals::from).collect(),
        top.into_iter().map(Totals::from).collect(),
    ))
}

// --- tuned: ClickHouse ---------------------------------------------------------------------

/// Time bounds of one ClickHouse scan: `at_us` in `[low_us, high_us)`, and the same bounds in
/// whole seconds on `at`, the partition key, so that months outside are never opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    low_us: i64,
    high_us: i64,
}

impl Window {
    fn low_seconds(&self) -> u32 {
        clamp_seconds(self.low_us.div_euclid(1_000_000))
    }

    /// The last whole second that can hold an `at_us` below `high_us`.
    fn high_seconds(&self) -> u32 {
        clamp_seconds((self.high_us - 1).div_euclid(1_000_000))
    }
}

fn clamp_seconds(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The windows a page is looked for in, newest first: adjacent, not overlapping, together
/// covering exactly `[from, min(to, just after the cursor))`.
fn windows(range: TimeRange, cursor: Option<Cursor>, now: DateTime<Utc>) -> Vec<Window> {
    let low = range.from.map(micros).unwrap_or(0).max(0);
    let mut high = range.to.map(micros).unwrap_or(i64::MAX);
    if let Some(cursor) = cursor {
        high = high.min(cursor.at_us.saturating_add(1));
    }
    let anchor = if high == i64::MAX { micros(now) } else { high };
    let mut out = Vec::with_capacity(WINDOW_WIDTHS_US.len() + 1);
    let mut window_high = high;
    for width in WINDOW_WIDTHS_US.into_iter().map(Some).chain([None]) {
        if window_high <= low {
            break;
        }
        let window_low = match width {
            Some(width) => anchor.saturating_sub(width).max(low),
            None => low,
        };
        if window_low >= window_high {
            continue;
        }
        out.push(Window { low_us: window_low, high_us: window_high });
        window_high = window_low;
    }
    out
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct ClickHouseEntryRow {
    entry_id: u64,
    at_us: i64,
    direction: i8,
    amount: i64,
    balance_after: i64,
    kind: String,
    counterparty_account_id: Option<i64>,
    counterparty_name: String,
    transfer_id: Option<i64>,
    memo: String,
}

impl ClickHouseEntryRow {
    fn into_entry(self, account_id: i64) -> anyhow::Result<HistoryEntry> {
        let direction = match self.direction {
            DIRECTION_IN => "in",
            DIRECTION_OUT => "out",
            other => anyhow::bail!("entry {} has direction {other}", self.entry_id),
        };
        Ok(HistoryEntry {
            id: i64::try_from(self.entry_id)?,
            at: DateTime::from_timestamp_micros(self.at_us)
                .ok_or_else(|| anyhow::anyhow!("entry {} time out of range", self.entry_id))?,
            account_id,
            direction,
            amount: self.amount,
            balance_after: self.balance_after,
            kind: self.kind,
            counterparty_account_id: self.counterparty_account_id,
            counterparty_name: self.counterparty_name,
            transfer_id: self.transfer_id,
            memo: non_empty(Some(self.memo)),
        })
    }
}

/// One keyset page from ClickHouse, newest first.
pub async fn tuned_page(
    clickhouse: &ClickHouse,
    account_id: i64,
    range: TimeRange,
    cursor: Option<Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Page> {
    let wanted = (limit + 1) as usize;
    let (before_us, before_id) = cursor.map(|cursor| (cursor.at_us, cursor.id)).unwrap_or((i64::MAX, 0));
    let mut entries: Vec<HistoryEntry> = Vec::with_capacity(wanted);
    for window in windows(range, cursor, now) {
        let rows: Vec<ClickHouseEntryRow> = clickhouse
            .client()
            .query(
                "SELECT entry_id, at_us, direction, amount, balance_after, kind,
                        counterparty_account_id, counterparty_name, transfer_id, memo
                 FROM statement_entries
                 WHERE account_id = ?
                   AND at >= toDateTime(?) AND at <= toDateTime(?)
                   AND at_us >= ? AND at_us < ?
                   AND (at_us < ? OR (at_us = ? AND entry_id < ?))
                 ORDER BY at_us DESC, entry_id DESC
                 LIMIT 1 BY entry_id
                 LIMIT ?",
            )
            .bind(account_id)
            .bind(window.low_seconds())
            .bind(window.high_seconds())
            .bind(window.low_us)
            .bind(window.high_us)
            .bind(before_us)
            .bind(before_us)
            .bind(before_id)
            .bind((wanted - entries.len()) as u64)
            .fetch_all()
            .await?;
        for row in rows {
            entries.push(row.into_entry(account_id)?);
        }
        if entries.len() >= wanted {
            break;
        }
    }
    Ok(page_of(entries, limit))
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct ClickHouseTotalsRow {
    name: String,
    in_total: i64,
    out_total: i64,
    count: u64,
}

impl From<ClickHouseTotalsRow> for Totals {
    fn from(row: ClickHouseTotalsRow) -> Self {
        Totals { name: row.name, in_total: row.in_total, out_total: row.out_total, count: row.count as i64 }
    }
}

/// Totals by kind and the top counterparties, from ClickHouse (replays counted once).
pub async fn tuned_summary(clickhouse: &ClickHouse, account_id: i64, range: TimeRange) -> anyhow::Result<Summary> {
    let window = Window {
        low_us: range.from.map(micros).unwrap_or(0).max(0),
        high_us: range.to.map(micros).unwrap_or(i64::MAX),
    };
    if window.low_us >= window.high_us {
        return Ok(Summary::from_parts(Vec::new(), Vec::new()));
    }
    let by_kind: Vec<ClickHouseTotalsRow> = clickhouse
        .client()
        .query(
            "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
                    count() AS count
             FROM (
                 SELECT kind, direction, amount
                 FROM statement_entries
                 WHERE account_id = ?
                   AND at >= toDateTime(?) AND at <= toDateTime(?)
                   AND at_us >= ? AND at_us < ?
                 LIMIT 1 BY entry_id
             )
             GROUP BY kind
             ORDER BY kind",
        )
        .bind(account_id)
        .bind(window.low_seconds())
        .bind(window.high_seconds())
        .bind(window.low_us)
        .bind(window.high_us)
        .fetch_all()
        .await?;
    let top: Vec<ClickHouseTotalsRow> = clickhouse
        .client()
        .query(
            "SELECT counterparty_name AS name, sumIf(amount, direction = 'in') AS in_total,
                    sumIf(amount, direction = 'out') AS out_total, count() AS count
             FROM (
                 SELECT counterparty_name, direction, amount
                 FROM statement_entries
                 WHERE account_id = ?
                   AND at >= toDateTime(?) AND at <= toDateTime(?)
                   AND at_us >= ? AND at_us < ?
                 LIMIT 1 BY entry_id
             )
             GROUP BY counterparty_name
             ORDER BY count DESC, name
             LIMIT ?",
        )
        .bind(account_id)
        .bind(window.low_seconds())
        .bind(window.high_seconds())
        .bind(window.low_us)
        .bind(window.high_us)
        .bind(TOP_COUNTERPARTIES_MAX)
        .fetch_all()
        .await?;
    Ok(Summary::from_parts(
        by_kind.into_iter().map(Totals::from).collect(),
        top.into_iter().map(Totals::from).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor { at_us: 1_767_225_600_000_001, id: 42 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "h", "h1", "h1.", "h.1", "hx.1", "h1.0", "h-1.1", "i42", "h1.2.3"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows_cover_the_range_without_overlap() {
        let now = at("2026-06-01T00:00:00Z");
        let all = windows(TimeRange::default(), None, now);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].high_us, i64::MAX);
        assert_eq!(all[0].low_us, micros(now) - 3 * DAY_US);
        assert_eq!(all.last().unwrap().low_us, 0);
        for pair in all.windows(2) {
            assert_eq!(pair[0].low_us, pair[1].high_us);
        }
        // A short range is one window, bounded on both sides.
        let range = TimeRange { from: Some(at("2026-05-01T00:00:00Z")), to: Some(at("2026-05-02T00:00:00Z")) };
        assert_eq!(
            windows(range, None, now),
            vec![Window { low_us: micros(at("2026-05-01T00:00:00Z")), high_us: micros(at("2026-05-02T00:00:00Z")) }]
        );
        // A cursor moves the top to just after itself.
        let cursor = Cursor { at_us: micros(at("2026-05-01T12:00:00Z")), id: 7 };
        assert_eq!(windows(range, Some(cursor), now)[0].high_us, cursor.at_us + 1);
        let window = Window { low_us: 1_500_000, high_us: 3_000_000 };
        assert_eq!((window.low_seconds(), window.high_seconds()), (1, 2));
    }
}
