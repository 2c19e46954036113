//! Statement pages from ClickHouse: newest first with a keyset cursor over (at_us, entry_id),
//! only the needed columns, `at` bounds for partition pruning, and replays removed with
//! `LIMIT 1 BY entry_id` (`FINAL` is far too slow for pages). ClickHouse 18.16 cannot read
//! in key order for `ORDER BY ... DESC LIMIT`, so a page reads every matching row of its time
//! window: pages are looked for in widening windows back from the cursor, `to`, or now
//! ([`Windows`]). The first is sized from the density of the previous page, which the
//! cursor carries (3 days without one), so that paging through an account with hundreds of
//! thousands of entries reads about one granule a page; each further window is sized from
//! the entries found so far, so that a sparse account needs two queries, not four.

use chrono::{DateTime, Utc};

use super::clickhouse::ClickHouse;
use super::entry::{micros, ClickHouseEntryRow, Cursor, Filters, HistoryEntry, TimeRange, CLICKHOUSE_ENTRY_COLUMNS};
use crate::domain::ids::AccountId;

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

/// Time bounds of one ClickHouse scan: `at_us` in `[low_us, high_us)`, and the same bounds in
/// whole seconds on `at`, the partition key, so that months outside are never opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) low_us: i64,
    pub(crate) high_us: i64,
}

impl Window {
    pub(crate) fn low_seconds(&self) -> u32 {
        clamp_seconds(self.low_us.div_euclid(1_000_000))
    }

    /// The last whole second that can hold an `at_us` below `high_us`.
    pub(crate) fn high_seconds(&self) -> u32 {
        clamp_seconds((self.high_us - 1).div_euclid(1_000_000))
    }
}

fn clamp_seconds(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
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

/// The filters given, as `WHERE` conditions on the rows `PREWHERE` kept (in `PREWHERE`,
/// ClickHouse 18.16 refuses columns computed by an `ALIAS`); bound by [`bind_filters`].
fn filter_conditions(filters: &Filters) -> String {
    let mut conditions = String::new();
    if filters.direction.is_some() {
        conditions.push_str(" AND direction = ?");
    }
    if filters.kind.is_some() {
        conditions.push_str(" AND kind = ?");
    }
    if filters.counterparty_account_id.is_some() {
        conditions.push_str(" AND counterparty_account_id = ?");
    }
    conditions
}

fn bind_filters(mut query: clickhouse::query::Query, filters: &Filters) -> clickhouse::query::Query {
    if let Some(direction) = filters.direction {
        query = query.bind(direction);
    }
    if let Some(kind) = filters.kind {
        query = query.bind(kind);
    }
    if let Some(id) = filters.counterparty_account_id {
        query = query.bind(id);
    }
    query
}

/// The entries of a ClickHouse keyset page and the one after them (at most `limit + 1`, newest
/// first): only what ClickHouse holds, to be merged with the entries still waiting in the
/// outbox before they are cut into a page.
pub async fn tuned_entries(
    clickhouse: &ClickHouse,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    cursor: Option<Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<HistoryEntry>> {
    // On a cluster, only the account's shard holds its entries.
    let clickhouse = &clickhouse.for_account(account_id);
    let wanted = (limit + 1) as usize;
    let (before_us, before_id) = cursor.map(|cursor| (cursor.at_us, cursor.id)).unwrap_or((i64::MAX, 0));
    let mut entries: Vec<HistoryEntry> = Vec::with_capacity(wanted);
    let mut windows = Windows::new(range, cursor, now, wanted);
    while let Some(window) = windows.next(entries.len()) {
        let query = clickhouse
            .query(&format!(
                "SELECT {CLICKHOUSE_ENTRY_COLUMNS}
                 FROM statement_entries
                 PREWHERE account_id = ?
                   AND at >= toDateTime(?) AND at <= toDateTime(?)
                   AND at_us >= ? AND at_us < ?
                   AND (at_us < ? OR (at_us = ? AND entry_id < ?))
                 WHERE 1{}
                 ORDER BY at_us DESC, entry_id DESC
                 LIMIT 1 BY entry_id
                 LIMIT ?",
                filter_conditions(filters)
            ))
            .bind(account_id)
            .bind(window.low_seconds())
            .bind(window.high_seconds())
            .bind(window.low_us)
            .bind(window.high_us)
            .bind(before_us)
            .bind(before_us)
            .bind(before_id);
        let rows: Vec<ClickHouseEntryRow> =
            bind_filters(query, filters).bind((wanted - entries.len()) as u64).fetch_all().await?;
        for row in rows {
            entries.push(row.into_entry(account_id)?);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
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
}
