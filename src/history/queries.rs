//! History queries, two ways with the same answers.
//!
//! - naive: PostgreSQL, `OFFSET` paging and a `count(*)`, what a first version would do;
//! - tuned: ClickHouse, newest first with a keyset cursor over (at_us, entry_id), only the
//!   needed columns, `at` bounds for partition pruning, and replays removed with
//!   `LIMIT 1 BY entry_id` (`FINAL` is far too slow for pages). ClickHouse 18.16 cannot read
//!   in key order for `ORDER BY ... DESC LIMIT`, so a page reads every matching row of its time
//!   window: pages are looked for in widening windows back from the cursor, `to`, or now
//!   ([`Windows`]). The first is sized from the density of the previous page, which the
//!   cursor carries (3 days without one), so that paging through an account with hundreds of
//!   thousands of entries reads about one granule a page; each further window is sized from
//!   the entries found so far, so that a sparse account needs two queries, not four.
//! - fallback: the tuned keyset query on PostgreSQL, for when ClickHouse is unreachable.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgConnection;

use super::clickhouse::ClickHouse;
use super::forwarder::{PgEntry, DIRECTION_IN, DIRECTION_OUT};

/// Counterparties listed in a summary.
pub const TOP_COUNTERPARTIES_MAX: i64 = 10;
/// The first window of a page without a density hint (the first page).
const FIRST_WINDOW_US: i64 = 3 * DAY_US;
/// A first window from a density hint is meant to hold this many pages (the density of the
/// next page differs from the last one's).
const HINT_PAGES: i64 = 4;
/// ... and is never narrower than this.
const HINTED_WINDOW_MIN_US: i64 = 60 * 1_000_000;
/// Further windows aim at this many times the entries still missing.
const GROWTH_SAFETY: i64 = 2;
/// Queries a page may take: the last one reaches the end of the range, whatever is left.
const WINDOWS_MAX: u32 = 6;
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
    /// The counterparty's real user name, beside the name shown.
    pub counterparty_user_name: Option<String>,
    pub transfer_id: Option<i64>,
    /// An empty memo is no memo, in both stores.
    pub memo: Option<String>,
}

impl HistoryEntry {
    pub fn cursor(&self) -> Cursor {
        Cursor { at_us: self.at.timestamp_micros(), id: self.id, gap_us: None }
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
            counterparty_user_name: entry.counterparty_user_name,
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

/// Cursor times are before 10000-01-01T00:00:00Z (in microseconds): every entry's time is, and
/// both stores can compare against any such instant. Later ones are refused as malformed.
const CURSOR_AT_US_END: i64 = 253_402_300_800_000_000;

/// The last entry of a page: the next page holds what sorts after it (older, or as old with
/// a smaller id). `gap_us`, the page's mean time between entries, only sizes the next page's
/// first window: it never changes which entries a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: i64,
    pub gap_us: Option<i64>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self.gap_us {
            Some(gap_us) => format!("h{}.{}.{gap_us}", self.at_us, self.id),
            None => format!("h{}.{}", self.at_us, self.id),
        }
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let mut parts = text.strip_prefix('h')?.split('.');
        let at_us: i64 = parts.next()?.parse().ok()?;
        let id: i64 = parts.next()?.parse().ok()?;
        let gap_us = match parts.next() {
            None => None,
            Some(gap) => Some(gap.parse::<i64>().ok().filter(|gap| *gap >= 0)?),
        };
        let in_range = (0..CURSOR_AT_US_END).contains(&at_us);
        (parts.next().is_none() && in_range && id > 0).then_some(Cursor { at_us, id, gap_us })
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
        entries.last().map(|last| {
            let first = &entries[0];
            let gaps = entries.len() as i64 - 1;
            let gap_us = (gaps > 0).then(|| (micros(first.at) - micros(last.at)).max(0) / gaps);
            Cursor { gap_us, ..last.cursor() }
        })
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

/// Money to and from one counterparty: an account (whatever names it was shown under), or,
/// for the outside world and system accounts (no account), a name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CounterpartyTotals {
    pub account_id: Option<i64>,
    /// The name most recently shown.
    pub name: String,
    /// The real user name most recently recorded (None for system counterparties).
    pub user_name: Option<String>,
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
    /// The counterparties with the most entries; ties by name (byte order), then account.
    pub top_counterparties: Vec<CounterpartyTotals>,
}

impl Summary {
    fn from_parts(by_kind: Vec<Totals>, top_counterparties: Vec<CounterpartyTotals>) -> Self {
        let in_total = by_kind.iter().map(|kind| kind.in_total).sum();
        let out_total = by_kind.iter().map(|kind| kind.out_total).sum();
        Summary { in_total, out_total, by_kind, top_counterparties }
    }
}

// --- naive: PostgreSQL, OFFSET and count ---------------------------------------------------

const PG_ENTRY_COLUMNS: &str = "id, account_id, at, direction, amount, balance_after, kind, counterparty_account_id,
     counterparty_name, transfer_id, memo, counterparty_user_name";

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
    // One row per counterparty account, however many names it was shown under (a display
    // name is the sender's choice: grouping by it would merge anyone calling themselves "bob"
    // with bob); system counterparties have no account and go by name.
    let top: Vec<CounterpartyTotals> = sqlx::query_as(
        "SELECT * FROM (
             SELECT counterparty_account_id AS account_id,
                    (array_agg(counterparty_name ORDER BY at DESC, id DESC))[1] AS name,
                    (array_agg(counterparty_user_name ORDER BY at DESC, id DESC)
                        FILTER (WHERE counterparty_user_name IS NOT NULL))[1] AS user_name,
                    coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                    coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                    count(*) AS count
             FROM statement_entries
             WHERE account_id = $1 AND at >= $2 AND at < $3
             GROUP BY counterparty_account_id, CASE WHEN counterparty_account_id IS NULL THEN counterparty_name END
         ) counterparties
         ORDER BY count DESC, name COLLATE \"C\", account_id NULLS LAST
         LIMIT $4",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(TOP_COUNTERPARTIES_MAX)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Summary::from_parts(by_kind.into_iter().map(Totals::from).collect(), top))
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

/// The windows a page is looked for in, newest first: adjacent, never overlapping, asked for
/// one at a time until the page is full or together they cover exactly
/// `[from, min(to, just after the cursor))`. Widths are measured back from an anchor (the
/// cursor, `to`, or now): the first from the cursor's density hint, each next one from the
/// entries found so far (at least doubling what is covered).
#[derive(Debug)]
struct Windows {
    low: i64,
    anchor: i64,
    /// The high end of the next window: the low end of the last one.
    next_high: i64,
    first_width: i64,
    /// Windows handed out so far.
    given: u32,
    wanted: i64,
}

impl Windows {
    fn new(range: TimeRange, cursor: Option<Cursor>, now: DateTime<Utc>, wanted: usize) -> Self {
        let low = range.from.map(micros).unwrap_or(0).max(0);
        let mut high = range.to.map(micros).unwrap_or(i64::MAX);
        if let Some(cursor) = cursor {
            high = high.min(cursor.at_us.saturating_add(1));
        }
        let anchor = if high == i64::MAX { micros(now) } else { high };
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX).max(1);
        let first_width = match cursor.and_then(|cursor| cursor.gap_us) {
            Some(gap_us) => gap_us.saturating_mul(wanted).saturating_mul(HINT_PAGES).max(HINTED_WINDOW_MIN_US),
            None => FIRST_WINDOW_US,
        };
        Windows { low, anchor, next_high: high, first_width, given: 0, wanted }
    }

    /// The next window, given how many entries the earlier ones held.
    fn next(&mut self, found: usize) -> Option<Window> {
        let found = i64::try_from(found).unwrap_or(i64::MAX);
        if found >= self.wanted || self.next_high <= self.low {
            return None;
        }
        let span = if self.given + 1 >= WINDOWS_MAX {
            i64::MAX
        } else if self.given > 0 {
            // What is covered held `found` entries: aim at twice the span the missing ones
            // should take at that density, and at least double it.
            let covered = self.anchor.saturating_sub(self.next_high).max(1);
            let needed = covered.saturating_mul(GROWTH_SAFETY).saturating_mul(self.wanted) / found.max(1);
            needed.max(covered.saturating_mul(2))
        } else {
            self.first_width
        };
        self.given += 1;
        let mut low = self.anchor.saturating_sub(span).max(self.low);
        if low >= self.next_high {
            low = self.low;
        }
        let window = Window { low_us: low, high_us: self.next_high };
        self.next_high = low;
        Some(window)
    }
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
    counterparty_user_name: Option<String>,
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
            counterparty_user_name: self.counterparty_user_name,
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
    let mut windows = Windows::new(range, cursor, now, wanted);
    while let Some(window) = windows.next(entries.len()) {
        let rows: Vec<ClickHouseEntryRow> = clickhouse
            .query(
                "SELECT entry_id, at_us, direction, amount, balance_after, kind,
                        counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name
                 FROM statement_entries
                 PREWHERE account_id = ?
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

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct ClickHouseCounterpartyRow {
    account_id: Option<i64>,
    name: String,
    user_name: Option<String>,
    in_total: i64,
    out_total: i64,
    count: u64,
}

impl From<ClickHouseCounterpartyRow> for CounterpartyTotals {
    fn from(row: ClickHouseCounterpartyRow) -> Self {
        CounterpartyTotals {
            account_id: row.account_id,
            name: row.name,
            user_name: row.user_name,
            in_total: row.in_total,
            out_total: row.out_total,
            count: row.count as i64,
        }
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
    // Two independent scans: side by side, the summary takes as long as the slower one.
    let by_kind = clickhouse
        .query(
            "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
                    count() AS count
             FROM (
                 SELECT kind, direction, amount
                 FROM statement_entries
                 PREWHERE account_id = ?
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
        .fetch_all::<ClickHouseTotalsRow>();
    // By account, as naive_summary; the latest name by (at_us, entry_id), the order of the
    // statement, and argMax skips NULL user names as the PostgreSQL FILTER does.
    let top = clickhouse
        .query(
            "SELECT counterparty_account_id AS account_id, argMax(counterparty_name, (at_us, entry_id)) AS name,
                    argMax(counterparty_user_name, (at_us, entry_id)) AS user_name,
                    sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
                    count() AS count
             FROM (
                 SELECT entry_id, at_us, counterparty_account_id, counterparty_name, counterparty_user_name,
                        direction, amount
                 FROM statement_entries
                 PREWHERE account_id = ?
                   AND at >= toDateTime(?) AND at <= toDateTime(?)
                   AND at_us >= ? AND at_us < ?
                 LIMIT 1 BY entry_id
             )
             GROUP BY counterparty_account_id, if(isNull(counterparty_account_id), counterparty_name, '')
             ORDER BY count DESC, name, account_id
             LIMIT ?",
        )
        .bind(account_id)
        .bind(window.low_seconds())
        .bind(window.high_seconds())
        .bind(window.low_us)
        .bind(window.high_us)
        .bind(TOP_COUNTERPARTIES_MAX)
        .fetch_all::<ClickHouseCounterpartyRow>();
    let (by_kind, top) = tokio::try_join!(by_kind, top)?;
    Ok(Summary::from_parts(
        by_kind.into_iter().map(Totals::from).collect(),
        top.into_iter().map(CounterpartyTotals::from).collect(),
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
        for gap_us in [None, Some(0), Some(63_000_000)] {
            let cursor = Cursor { at_us: 1_767_225_600_000_001, id: 42, gap_us };
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
        // Cursors without a hint (from before there was one) still work.
        assert_eq!(Cursor::decode("h7.42"), Some(Cursor { at_us: 7, id: 42, gap_us: None }));
        // The last microsecond of the year 9999 is the latest cursor time, and it is an instant.
        let latest = Cursor::decode("h253402300799999999.1").unwrap();
        assert!(DateTime::from_timestamp_micros(latest.at_us).is_some());
        for bad in [
            "",
            "h",
            "h1",
            "h1.",
            "h.1",
            "hx.1",
            "h1.0",
            "h-1.1",
            "i42",
            "h1.2.",
            "h1.2.x",
            "h1.2.-3",
            "h1.2.3.4",
            "h9223372036854775807.1",
            "h253402300800000000.1",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    /// Every window `Windows` hands out when each holds `found(window)` entries.
    fn all_windows(mut windows: Windows, found: impl Fn(&Window) -> usize) -> Vec<Window> {
        let mut out = Vec::new();
        let mut total = 0;
        while let Some(window) = windows.next(total) {
            total += found(&window);
            out.push(window);
            assert!(out.len() < 100, "no end: {out:?}");
        }
        out
    }

    fn assert_adjacent(windows: &[Window]) {
        for window in windows {
            assert!(window.low_us < window.high_us, "{window:?}");
        }
        for pair in windows.windows(2) {
            assert_eq!(pair[0].low_us, pair[1].high_us);
        }
    }

    #[test]
    fn windows_cover_the_range_without_overlap() {
        let now = at("2026-06-01T00:00:00Z");
        // Nothing anywhere: windows grow until they reach the beginning of time.
        let all = all_windows(Windows::new(TimeRange::default(), None, now, 51), |_| 0);
        assert_eq!(all[0].high_us, i64::MAX);
        assert_eq!(all[0].low_us, micros(now) - 3 * DAY_US);
        assert_eq!(all[1].low_us, micros(now) - 3 * DAY_US * 2 * 51);
        assert_eq!(all.last().unwrap().low_us, 0);
        assert!(all.len() <= 4, "{all:?}");
        assert_adjacent(&all);
        // A sparse account (one entry in the first 3 days): the second window is sized for
        // the rest of the page at that density.
        let sparse = all_windows(Windows::new(TimeRange::default(), None, now, 51), |window| {
            if window.high_us == i64::MAX {
                1
            } else {
                100
            }
        });
        assert_eq!(sparse.len(), 2);
        assert_eq!(sparse[1].low_us, micros(now) - 3 * DAY_US * 2 * 51);
        // A full first window is the only one.
        assert_eq!(all_windows(Windows::new(TimeRange::default(), None, now, 51), |_| 51).len(), 1);
        // A short range is one window, bounded on both sides.
        let range = TimeRange { from: Some(at("2026-05-01T00:00:00Z")), to: Some(at("2026-05-02T00:00:00Z")) };
        assert_eq!(
            all_windows(Windows::new(range, None, now, 51), |_| 0),
            vec![Window { low_us: micros(at("2026-05-01T00:00:00Z")), high_us: micros(at("2026-05-02T00:00:00Z")) }]
        );
        // A cursor moves the top to just after itself; without a hint the first window is 3 days.
        let cursor = Cursor { at_us: micros(at("2026-05-01T12:00:00Z")), id: 7, gap_us: None };
        let year = TimeRange { from: Some(at("2025-06-01T00:00:00Z")), to: None };
        let from_cursor = all_windows(Windows::new(year, Some(cursor), now, 51), |_| 0);
        assert_eq!(from_cursor[0], Window { low_us: cursor.at_us + 1 - 3 * DAY_US, high_us: cursor.at_us + 1 });
        assert_eq!(from_cursor.last().unwrap().low_us, micros(at("2025-06-01T00:00:00Z")));
        assert_adjacent(&from_cursor);
        // With a hint, the first window is sized for a few pages at the previous page's density,
        // and never below a minute.
        let hinted = Cursor { gap_us: Some(60_000_000), ..cursor };
        let first = Windows::new(year, Some(hinted), now, 51).next(0).unwrap();
        assert_eq!(first.high_us - first.low_us, 60_000_000 * 51 * HINT_PAGES);
        let dense = Cursor { gap_us: Some(0), ..cursor };
        let first = Windows::new(year, Some(dense), now, 51).next(0).unwrap();
        assert_eq!(first.high_us - first.low_us, HINTED_WINDOW_MIN_US);
        let hinted_all = all_windows(Windows::new(year, Some(dense), now, 51), |_| 3);
        assert_adjacent(&hinted_all);
        assert!(hinted_all.len() <= WINDOWS_MAX as usize, "{hinted_all:?}");
        // However badly the entries are spread, a page takes at most WINDOWS_MAX queries.
        let capped = all_windows(Windows::new(year, Some(dense), now, 51), |_| 50 / WINDOWS_MAX as usize);
        assert_eq!(capped.len(), WINDOWS_MAX as usize);
        assert_adjacent(&capped);
        assert_eq!(capped.last().unwrap().low_us, micros(at("2025-06-01T00:00:00Z")));
        let window = Window { low_us: 1_500_000, high_us: 3_000_000 };
        assert_eq!((window.low_seconds(), window.high_seconds()), (1, 2));
    }

    #[test]
    fn a_full_page_hints_its_density_to_the_next() {
        let entry = |id: i64, at_us: i64| HistoryEntry {
            id,
            at: DateTime::from_timestamp_micros(at_us).unwrap(),
            account_id: 1,
            direction: "in",
            amount: 1,
            balance_after: 1,
            kind: "charge".to_owned(),
            counterparty_account_id: None,
            counterparty_name: "external".to_owned(),
            counterparty_user_name: None,
            transfer_id: None,
            memo: None,
        };
        let entries = vec![entry(4, 4_000), entry(3, 3_000), entry(2, 1_000), entry(1, 500)];
        let page = page_of(entries.clone(), 3);
        assert_eq!(page.entries.len(), 3);
        assert_eq!(page.next, Some(Cursor { at_us: 1_000, id: 2, gap_us: Some(1_500) }));
        assert_eq!(page_of(entries.clone(), 1).next, Some(Cursor { at_us: 4_000, id: 4, gap_us: None }));
        assert_eq!(page_of(entries, 4).next, None);
    }
}
