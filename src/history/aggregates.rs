//! The daily totals ClickHouse keeps per account (`daily_totals`, and per counterparty
//! `daily_counterparty_totals`, fed by materialized views on `statement_entries`, see
//! clickhouse/README.md): what keeps them exact under the
//! forwarder's replays, and what retention drops of them.
//!
//! A materialized view counts every inserted row, so a batch inserted twice (the forwarder
//! crashed between its ClickHouse insert and the outbox delete) would count twice, although
//! `statement_entries` collapses the copies. So before each insert the forwarder asks which
//! entries of its batch ClickHouse already holds ([`stored_ids`]) and inserts only the others.
//! Outbox rows are locked by the step that forwards them, so no other forwarder inserts the
//! same entries meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use super::clickhouse::ClickHouse;
use super::entry::{micros, Filters, HistoryEntry, TimeRange, DIRECTION_IN, DIRECTION_OUT};
use super::summary::{rank, CounterpartyTotals, Summary, Totals, Unnamed, TOP_COUNTERPARTIES_MAX};
use crate::domain::ids::AccountId;

/// An entry of a batch as [`stored_ids`] looks it up: id, account, time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryKey {
    pub entry_id: u64,
    pub account_id: i64,
    pub at_us: i64,
}

/// The ids among `keys` that `statement_entries` already holds. (The arrays are cast: an
/// `IN` set of another integer type matches nothing on 18.16, silently.) The look-up reads only the
/// batch's accounts over the batch's time span (primary-key and partition pruning), so it
/// costs a few milliseconds whatever the table's size.
pub async fn stored_ids(clickhouse: &ClickHouse, keys: &[EntryKey]) -> anyhow::Result<HashSet<u64>> {
    let (Some(low_us), Some(high_us)) =
        (keys.iter().map(|key| key.at_us).min(), keys.iter().map(|key| key.at_us).max())
    else {
        return Ok(HashSet::new());
    };
    let mut accounts: Vec<i64> = keys.iter().map(|key| key.account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let ids: Vec<u64> = keys.iter().map(|key| key.entry_id).collect();
    let seconds = |us: i64| u32::try_from(us.div_euclid(1_000_000).max(0)).unwrap_or(u32::MAX);
    let found: Vec<u64> = clickhouse
        .query(
            "SELECT DISTINCT entry_id
             FROM statement_entries
             PREWHERE account_id IN (SELECT toInt64(arrayJoin(?)))
               AND at >= toDateTime(?) AND at <= toDateTime(?)
               AND at_us >= ? AND at_us <= ?
               AND entry_id IN (SELECT toUInt64(arrayJoin(?)))",
        )
        .bind(&accounts)
        .bind(seconds(low_us))
        .bind(seconds(high_us))
        .bind(low_us)
        .bind(high_us)
        .bind(&ids)
        .fetch_all()
        .await?;
    Ok(found.into_iter().collect())
}

/// Drops the month `yyyymm` (a partition id like `202511`) from `statement_entries` and from
/// both tables of daily totals, on every shard of a cluster. The totals go first: a run that
/// fails between the two (or on a shard that is down) finds the entries' partition again next
/// time and drops both (dropping a missing partition does nothing).
pub async fn drop_month(clickhouse: &ClickHouse, yyyymm: &str) -> anyhow::Result<()> {
    anyhow::ensure!(yyyymm.len() == 6 && yyyymm.chars().all(|c| c.is_ascii_digit()), "bad partition id {yyyymm:?}");
    for shard in clickhouse.shards() {
        for table in ["daily_totals", "daily_counterparty_totals", "statement_entries"] {
            shard.client().query(&format!("ALTER TABLE {table} DROP PARTITION {yyyymm}")).execute().await?;
        }
    }
    Ok(())
}

/// The partitions (`toYYYYMM(at)`, quoted or not as the server writes them) that
/// `statement_entries` has on any shard, each once.
pub async fn entry_partitions(clickhouse: &ClickHouse) -> anyhow::Result<Vec<String>> {
    let mut all = std::collections::BTreeSet::new();
    for shard in clickhouse.shards() {
        let partitions: Vec<String> = shard
            .client()
            .query(
                "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'statement_entries' AND active",
            )
            .bind(shard.database())
            .fetch_all()
            .await?;
        all.extend(partitions);
    }
    Ok(all.into_iter().collect())
}

// --- summaries from the daily totals ---------------------------------------------------------

const DAY_US: i64 = 86_400 * 1_000_000;

/// How a summary's range is read: the whole UTC days in it from the daily totals (`days`, as
/// `[first, end)` in days since the epoch), the rest (the partial days at either end, and
/// everything from the first day with an entry still waiting in the outbox on) from the entries,
/// as up to two `[low, high)` windows in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub days: Option<(i64, i64)>,
    pub edges: [(i64, i64); 2],
}

/// `low_us..high_us` split for a summary, `waiting_us` the time of the account's oldest entry
/// still in the outbox (its day and later are read from the entries, where the waiting
/// entries are left out by id; the daily totals cannot leave anything out).
pub fn split(low_us: i64, high_us: i64, waiting_us: Option<i64>) -> Split {
    let first_day = low_us.div_euclid(DAY_US) + i64::from(low_us.rem_euclid(DAY_US) != 0);
    let end_day = high_us.min(waiting_us.unwrap_or(i64::MAX)).div_euclid(DAY_US);
    if first_day >= end_day {
        return Split { days: None, edges: [(low_us, high_us), (high_us, high_us)] };
    }
    Split { days: Some((first_day, end_day)), edges: [(low_us, first_day * DAY_US), (end_day * DAY_US, high_us)] }
}

/// The entries of a summary's edge windows, one copy each, leaving out the waiting entries
/// (added from PostgreSQL) and applying the filters. Binds: account, two windows (seconds and
/// microseconds each), direction code (0: any), kind ('' any), counterparty (0: any), ids.
macro_rules! edge_entries {
    ($columns:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM statement_entries
             PREWHERE account_id = ?
               AND ((at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?)
                 OR (at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?))
               AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
               AND (? = 0 OR ifNull(counterparty_account_id, 0) = ?)
               AND entry_id NOT IN (SELECT toUInt64(arrayJoin(?)))
             LIMIT 1 BY entry_id"
        )
    };
}

/// Totals by kind: whole days from `daily_totals`, edges from the entries.
const BY_KIND: &str = concat!(
    "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
            sum(entries) AS count
     FROM (
         SELECT kind, direction, entries, amount
         FROM daily_totals
         PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
         UNION ALL
         SELECT kind, direction, toUInt64(1) AS entries, amount
         FROM (",
    edge_entries!("kind, direction, amount"),
    ")
     )
     GROUP BY kind
     ORDER BY kind"
);

/// Totals by kind for one counterparty: whole days from `daily_counterparty_totals`.
const BY_KIND_OF_COUNTERPARTY: &str = concat!(
    "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
            sum(entries) AS count
     FROM (
         SELECT kind, direction, entries, amount
         FROM daily_counterparty_totals
         PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND counterparty_id = ?
         UNION ALL
         SELECT kind, direction, toUInt64(1) AS entries, amount
         FROM (",
    edge_entries!("kind, direction, amount"),
    ")
     )
     GROUP BY kind
     ORDER BY kind"
);

/// The counterparties with the most entries: the totals' argMax states of whole days merged
/// with those of the edges, so the latest names are those of the whole range.
const COUNTERPARTIES: &str = concat!(
    "SELECT if(counterparty_id = 0, NULL, counterparty_id) AS account_id, argMaxMerge(latest_name) AS name,
            argMaxMerge(latest_user_name) AS user_name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM (
         SELECT counterparty_id, counterparty_key, direction, entries, amount, latest_name, latest_user_name
         FROM daily_counterparty_totals
         PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
         UNION ALL
         SELECT toInt64(ifNull(counterparty_account_id, 0)) AS counterparty_id,
                if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key, direction,
                count() AS entries, sum(amount) AS amount,
                argMaxState(counterparty_name, (at_us, entry_id)) AS latest_name,
                argMaxState(ifNull(counterparty_user_name, ''),
                            if(isNull(counterparty_user_name), (toInt64(0), toUInt64(0)), (at_us, entry_id))) AS latest_user_name
         FROM (",
    edge_entries!("entry_id, at_us, direction, amount, counterparty_account_id, counterparty_name, counterparty_user_name"),
    ")
         GROUP BY counterparty_id, counterparty_key, direction
     )
     GROUP BY counterparty_id, counterparty_key
     ORDER BY count DESC, name, account_id
     LIMIT ?"
);

/// Every counterparty's totals without its names, which are costly to merge (a busy account
/// has a row per counterparty and day): the counterparties with entries waiting in the outbox
/// first (their keys bound: external names, then account ids; 0 and '' stand for none), then
/// the most entries first, at most `LIMIT`. (Sets rather than `has`: there may be thousands.)
const COUNTERPARTY_COUNTS: &str = concat!(
    "SELECT counterparty_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM (
         SELECT counterparty_id, counterparty_key, direction, entries, amount
         FROM daily_counterparty_totals
         PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
         UNION ALL
         SELECT toInt64(ifNull(counterparty_account_id, 0)) AS counterparty_id,
                if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key, direction,
                toUInt64(1) AS entries, amount
         FROM (",
    edge_entries!("counterparty_account_id, counterparty_name, direction, amount"),
    ")
     )
     GROUP BY counterparty_id, counterparty_key
     ORDER BY if(counterparty_id = 0, counterparty_key IN (SELECT arrayJoin(?)),
                 counterparty_id IN (SELECT toInt64(arrayJoin(?)))) DESC,
              count DESC
     LIMIT ?"
);

/// [`BY_KIND`] over whole days alone (the partial days read from PostgreSQL).
const DAYS_BY_KIND: &str = "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
     GROUP BY kind
     ORDER BY kind";

/// [`BY_KIND_OF_COUNTERPARTY`] over whole days alone.
const DAYS_BY_KIND_OF_COUNTERPARTY: &str = "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND counterparty_id = ?
     GROUP BY kind
     ORDER BY kind";

/// [`COUNTERPARTY_COUNTS`] over whole days alone.
const DAYS_COUNTERPARTY_COUNTS: &str =
    "SELECT counterparty_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
     GROUP BY counterparty_id, counterparty_key
     ORDER BY if(counterparty_id = 0, counterparty_key IN (SELECT arrayJoin(?)),
                 counterparty_id IN (SELECT toInt64(arrayJoin(?)))) DESC,
              count DESC
     LIMIT ?";

/// Counterparties read by their counts: enough that ties at the last place of the top are
/// rarely cut (a busy account has thousands of counterparties with one entry).
const COUNTED_MAX: usize = 100;

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct CountRow {
    counterparty_id: i64,
    counterparty_key: String,
    in_total: i64,
    out_total: i64,
    count: u64,
}

/// The counterparties that can be among the top ones, from the rows [`COUNTERPARTY_COUNTS`]
/// read with `limit` (the forced ones included) and the waiting entries added; their names
/// are left for PostgreSQL, except external ones (named by their key; entries without an
/// account carry no user name). None when the rows read cannot decide the top: a
/// counterparty left unread may have as many entries as the last of the top, and would come
/// before it by name.
fn candidates(rows: Vec<CountRow>, limit: usize, waiting: &[HistoryEntry]) -> Option<Vec<CounterpartyTotals>> {
    // Every counterparty left unread has at most the last row's count, and nothing waiting.
    let unread_max = if rows.len() < limit { 0 } else { rows.last().map_or(0, |row| row.count as i64) };
    let counted = rows
        .into_iter()
        .map(|row| CounterpartyTotals {
            account_id: (row.counterparty_id != 0).then_some(row.counterparty_id),
            name: row.counterparty_key,
            user_name: None,
            in_total: row.in_total,
            out_total: row.out_total,
            count: row.count as i64,
        })
        .collect();
    let mut merged = counterparties_with_waiting(counted, waiting);
    merged.sort_by_key(|cp| std::cmp::Reverse(cp.count));
    let last_of_top = merged.get(TOP_COUNTERPARTIES_MAX as usize - 1).map_or(0, |cp| cp.count);
    if unread_max > 0 && last_of_top <= unread_max {
        return None;
    }
    merged.retain(|cp| cp.count >= last_of_top);
    Some(merged)
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct KindRow {
    name: String,
    in_total: i64,
    out_total: i64,
    count: u64,
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct CounterpartyRow {
    account_id: Option<i64>,
    name: String,
    /// '' when none was recorded.
    user_name: String,
    in_total: i64,
    out_total: i64,
    count: u64,
}

/// The binds every summary query shares, in their order.
struct Binds {
    account_id: AccountId,
    days: (String, String),
    edges: [(u32, u32, i64, i64); 2],
    direction: i8,
    kind: &'static str,
    counterparty: i64,
    waiting_ids: Vec<u64>,
}

impl Binds {
    fn new(account_id: AccountId, split: Split, filters: &Filters, waiting: &[HistoryEntry]) -> Self {
        let date = |day: i64| {
            (NaiveDate::default() + chrono::Days::new(u64::try_from(day.max(0)).unwrap_or(0)))
                .format("%Y-%m-%d")
                .to_string()
        };
        let days = split.days.map_or_else(|| (date(0), date(0)), |(first, end)| (date(first), date(end)));
        let seconds =
            |us: i64| u32::try_from(us.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX);
        let edge = |(low, high): (i64, i64)| (seconds(low), seconds(high.saturating_sub(1)), low, high);
        // Entry ids are positive: 0 keeps the array's type known when nothing waits.
        let waiting_ids = std::iter::once(0).chain(waiting.iter().map(|entry| entry.id as u64)).collect();
        Binds {
            account_id,
            days,
            edges: [edge(split.edges[0]), edge(split.edges[1])],
            direction: match filters.direction {
                Some("in") => DIRECTION_IN,
                Some(_) => DIRECTION_OUT,
                None => 0,
            },
            kind: filters.kind.unwrap_or(""),
            counterparty: filters.counterparty_account_id.unwrap_or(0),
            waiting_ids,
        }
    }

    fn bind_days(&self, query: clickhouse::query::Query) -> clickhouse::query::Query {
        let query = query.bind(self.account_id).bind(self.days.0.as_str()).bind(self.days.1.as_str());
        query.bind(self.direction).bind(self.direction).bind(self.kind).bind(self.kind)
    }

    fn bind_edges(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        query = query.bind(self.account_id);
        for (low_s, high_s, low_us, high_us) in self.edges {
            query = query.bind(low_s).bind(high_s).bind(low_us).bind(high_us);
        }
        query = query.bind(self.direction).bind(self.direction).bind(self.kind).bind(self.kind);
        query.bind(self.counterparty).bind(self.counterparty).bind(&self.waiting_ids)
    }
}

/// The latest instant a summary reads, 2100-01-01: ClickHouse's `Date` and `DateTime` end
/// soon after (a later `toDate` wraps around), and no entry is later.
const SUMMARY_END_US: i64 = 4_102_444_800 * 1_000_000;

/// How a summary of `range` is read, given the entries still waiting in the outbox (their
/// days and later are read from the entries): None for an empty range.
pub fn summary_split(range: TimeRange, waiting: &[HistoryEntry]) -> Option<Split> {
    let low = range.from.map(micros).unwrap_or(0).max(0);
    let high = range.to.map(micros).unwrap_or(SUMMARY_END_US).min(SUMMARY_END_US);
    (low < high).then(|| split(low, high, waiting.iter().map(|entry| micros(entry.at)).min()))
}

/// The summary of `account_id` over `range` with `filters`: whole UTC days from the daily
/// totals, the rest as [`summary_split`] says: the entries of the edge windows, `edges`, when
/// the caller read them from PostgreSQL (every entry there, the waiting ones included, so
/// ClickHouse reads no entry at all), or else from ClickHouse's entries with the entries
/// still waiting in the outbox, `waiting`, added. Either way every entry committed before the
/// request counts once (`waiting` and `edges` are read from PostgreSQL before this, with the
/// same filters). The top counterparties are usually decided by their counts alone and left
/// to be named from PostgreSQL ([`super::summary::named`]); when their counts cannot decide
/// them, they come named and ranked from ClickHouse.
pub async fn summary(
    clickhouse: &ClickHouse,
    account_id: AccountId,
    (range, filters): (TimeRange, &Filters),
    waiting: &[HistoryEntry],
    edges: Option<&[HistoryEntry]>,
) -> anyhow::Result<Unnamed> {
    let Some(mut split) = summary_split(range, waiting) else {
        return Ok(Unnamed { summary: with_waiting(Vec::new(), Vec::new(), waiting), to_name: false });
    };
    let extra = match edges {
        Some(edges) => {
            if split.days.is_none() {
                return Ok(Unnamed { summary: with_waiting(Vec::new(), Vec::new(), edges), to_name: false });
            }
            let end = split.edges[1].1;
            split.edges = [(end, end), (end, end)];
            edges
        }
        None => waiting,
    };
    // On a cluster, the account's shard holds its entries and its totals.
    let clickhouse = &clickhouse.for_account(account_id);
    let binds = Binds::new(account_id, split, filters, if edges.is_some() { &[] } else { waiting });
    // Without edges to read, queries of the daily totals alone: the UNION with an empty read of
    // the entries still costs ClickHouse 18.16 several milliseconds.
    let days_only = edges.is_some();
    let with_edges = |query| if days_only { query } else { binds.bind_edges(query) };
    let by_kind = match (filters.counterparty_account_id, days_only) {
        (Some(counterparty), true) => {
            binds.bind_days(clickhouse.query(DAYS_BY_KIND_OF_COUNTERPARTY)).bind(counterparty)
        }
        (Some(counterparty), false) => {
            binds.bind_edges(binds.bind_days(clickhouse.query(BY_KIND_OF_COUNTERPARTY)).bind(counterparty))
        }
        (None, true) => binds.bind_days(clickhouse.query(DAYS_BY_KIND)),
        (None, false) => binds.bind_edges(binds.bind_days(clickhouse.query(BY_KIND))),
    };
    let (keys, ids) = waiting_counterparties(extra);
    let limit = COUNTED_MAX + keys.len() + ids.len();
    let counts_sql = if days_only { DAYS_COUNTERPARTY_COUNTS } else { COUNTERPARTY_COUNTS };
    let counts =
        with_edges(binds.bind_days(clickhouse.query(counts_sql)).bind(binds.counterparty).bind(binds.counterparty))
            .bind(keys)
            .bind(ids)
            .bind(limit as u64);
    let (kinds, counts) = tokio::try_join!(by_kind.fetch_all::<KindRow>(), counts.fetch_all::<CountRow>())?;
    let kinds: Vec<Totals> = kinds
        .into_iter()
        .map(|row| Totals { name: row.name, in_total: row.in_total, out_total: row.out_total, count: row.count as i64 })
        .collect();
    if let Some(top) = candidates(counts, limit, extra) {
        let summary = Summary::from_parts(kinds_with_waiting(kinds, extra), top);
        return Ok(Unnamed { summary, to_name: true });
    }
    let counterparties = named_counterparties(clickhouse, &binds, extra).await?;
    Ok(Unnamed { summary: with_waiting(kinds, counterparties, extra), to_name: false })
}

/// The keys of the counterparties of the entries added to ClickHouse's (the waiting ones, or the
/// partial days' read from PostgreSQL), as [`COUNTERPARTY_COUNTS`] binds
/// them: external names, account ids (each with a placeholder, so that neither is empty).
fn waiting_counterparties(waiting: &[HistoryEntry]) -> (Vec<String>, Vec<i64>) {
    let keys: BTreeSet<&str> = waiting
        .iter()
        .filter(|entry| entry.counterparty_account_id.is_none())
        .map(|entry| entry.counterparty_name.as_str())
        .collect();
    let ids: BTreeSet<i64> = waiting.iter().filter_map(|entry| entry.counterparty_account_id).collect();
    (std::iter::once("").chain(keys).map(str::to_owned).collect(), std::iter::once(0).chain(ids).collect())
}

/// Every counterparty with its names merged in ClickHouse, the top ones first.
async fn named_counterparties(
    clickhouse: &ClickHouse,
    binds: &Binds,
    waiting: &[HistoryEntry],
) -> anyhow::Result<Vec<CounterpartyTotals>> {
    // With entries waiting, any counterparty may rise into the top: all of them are merged.
    let limit = if waiting.is_empty() { TOP_COUNTERPARTIES_MAX as u64 } else { 1 << 40 };
    let rows = binds
        .bind_edges(binds.bind_days(clickhouse.query(COUNTERPARTIES)).bind(binds.counterparty).bind(binds.counterparty))
        .bind(limit)
        .fetch_all::<CounterpartyRow>()
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| CounterpartyTotals {
            account_id: row.account_id,
            name: row.name,
            user_name: Some(row.user_name).filter(|name| !name.is_empty()),
            in_total: row.in_total,
            out_total: row.out_total,
            count: row.count as i64,
        })
        .collect())
}

/// Adds the waiting entries to ClickHouse's totals, and keeps the top counterparties in the
/// order of the naive summary: most entries first, then name (byte order), then account
/// (none last). A waiting entry is newer than what ClickHouse holds of its account, so its
/// names become the latest.
fn with_waiting(kinds: Vec<Totals>, counterparties: Vec<CounterpartyTotals>, waiting: &[HistoryEntry]) -> Summary {
    let mut top = counterparties_with_waiting(counterparties, waiting);
    rank(&mut top);
    Summary::from_parts(kinds_with_waiting(kinds, waiting), top)
}

/// The waiting entries added to the totals by kind (by kind name).
fn kinds_with_waiting(kinds: Vec<Totals>, waiting: &[HistoryEntry]) -> Vec<Totals> {
    let mut kinds: BTreeMap<String, Totals> = kinds.into_iter().map(|totals| (totals.name.clone(), totals)).collect();
    for entry in waiting {
        let (amount_in, amount_out) = if entry.direction == "in" { (entry.amount, 0) } else { (0, entry.amount) };
        let kind = kinds.entry(entry.kind.clone()).or_insert_with(|| Totals {
            name: entry.kind.clone(),
            in_total: 0,
            out_total: 0,
            count: 0,
        });
        (kind.in_total, kind.out_total, kind.count) =
            (kind.in_total + amount_in, kind.out_total + amount_out, kind.count + 1);
    }
    kinds.into_values().collect()
}

/// The waiting entries added to the counterparties' totals (unordered); the latest waiting
/// entry of a counterparty gives its names.
fn counterparties_with_waiting(
    counterparties: Vec<CounterpartyTotals>,
    waiting: &[HistoryEntry],
) -> Vec<CounterpartyTotals> {
    let key = |account_id: Option<i64>, name: &str| (account_id, account_id.is_none().then(|| name.to_owned()));
    let mut counterparties: HashMap<(Option<i64>, Option<String>), CounterpartyTotals> =
        counterparties.into_iter().map(|totals| (key(totals.account_id, &totals.name), totals)).collect();
    let mut waiting: Vec<&HistoryEntry> = waiting.iter().collect();
    waiting.sort_by_key(|entry| (entry.at, entry.id));
    for entry in waiting {
        let (amount_in, amount_out) = if entry.direction == "in" { (entry.amount, 0) } else { (0, entry.amount) };
        let counterparty = counterparties
            .entry(key(entry.counterparty_account_id, &entry.counterparty_name))
            .or_insert_with(|| CounterpartyTotals {
                account_id: entry.counterparty_account_id,
                name: String::new(),
                user_name: None,
                in_total: 0,
                out_total: 0,
                count: 0,
            });
        counterparty.name = entry.counterparty_name.clone();
        if entry.counterparty_user_name.is_some() {
            counterparty.user_name = entry.counterparty_user_name.clone();
        }
        counterparty.in_total += amount_in;
        counterparty.out_total += amount_out;
        counterparty.count += 1;
    }
    counterparties.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_days_come_from_the_totals_and_the_rest_from_the_entries() {
        let day = |d: i64| d * DAY_US;
        // Partial days at both ends.
        assert_eq!(
            split(day(10) + 5, day(20) + 7, None),
            Split { days: Some((11, 20)), edges: [(day(10) + 5, day(11)), (day(20), day(20) + 7)] }
        );
        // Whole days only: empty edges.
        assert_eq!(
            split(day(10), day(20), None),
            Split { days: Some((10, 20)), edges: [(day(10), day(10)), (day(20), day(20))] }
        );
        // Less than a whole day: all from the entries.
        assert_eq!(
            split(day(10) + 5, day(11) + 1, None),
            Split { days: None, edges: [(day(10) + 5, day(11) + 1), (day(11) + 1, day(11) + 1)] }
        );
        // An entry waiting on day 15: that day and later come from the entries.
        assert_eq!(
            split(day(10), day(20), Some(day(15) + 99)),
            Split { days: Some((10, 15)), edges: [(day(10), day(10)), (day(15), day(20))] }
        );
        assert_eq!(split(day(10), day(20), Some(day(3))).days, None);
    }

    fn waiting_entry(
        id: i64,
        at_s: i64,
        direction: &'static str,
        kind: &str,
        counterparty: Option<i64>,
        name: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            id,
            at: chrono::DateTime::from_timestamp(at_s, 0).unwrap(),
            account_id: AccountId::new(1),
            direction,
            amount: 10,
            balance_after: 0,
            kind: kind.to_owned(),
            counterparty_account_id: counterparty,
            counterparty_name: name.to_owned(),
            counterparty_user_name: counterparty.map(|_| name.to_owned()),
            transfer_id: None,
            memo: None,
        }
    }

    #[test]
    fn waiting_entries_are_added_and_the_top_is_ranked_like_the_naive_summary() {
        let totals =
            |name: &str, count: i64| Totals { name: name.to_owned(), in_total: count * 10, out_total: 0, count };
        let cp = |account_id: Option<i64>, name: &str, count: i64| CounterpartyTotals {
            account_id,
            name: name.to_owned(),
            user_name: None,
            in_total: count * 10,
            out_total: 0,
            count,
        };
        let waiting = [
            waiting_entry(9, 200, "out", "transfer", Some(7), "bob"),
            waiting_entry(8, 100, "out", "transfer", Some(7), "robert"),
            waiting_entry(10, 300, "in", "charge", None, "external"),
        ];
        let summary = with_waiting(
            vec![totals("transfer", 1)],
            vec![cp(Some(7), "old", 1), cp(None, "external", 2), cp(Some(3), "ann", 2), cp(None, "interest", 2)],
            &waiting,
        );
        assert_eq!(
            summary.by_kind.iter().map(|kind| (kind.name.as_str(), kind.count)).collect::<Vec<_>>(),
            [("charge", 1), ("transfer", 3)]
        );
        assert_eq!((summary.in_total, summary.out_total), (20, 20));
        let top: Vec<(Option<i64>, &str, i64)> =
            summary.top_counterparties.iter().map(|cp| (cp.account_id, cp.name.as_str(), cp.count)).collect();
        // The latest waiting entry names bob's account; ties by name, then account, none last.
        assert_eq!(top, [(Some(7), "bob", 3), (None, "external", 3), (Some(3), "ann", 2), (None, "interest", 2)]);
        assert_eq!(summary.top_counterparties[0].user_name.as_deref(), Some("bob"));
    }
    fn count_row(id: i64, key: &str, count: u64) -> CountRow {
        CountRow { counterparty_id: id, counterparty_key: key.to_owned(), in_total: 0, out_total: 0, count }
    }

    #[test]
    fn the_counts_decide_the_top_unless_a_counterparty_left_unread_could_tie_its_last_place() {
        // Twelve rows read of a limit of twelve: the last read (1 entry) bounds the unread ones.
        let mut rows: Vec<CountRow> = (1..=9).map(|id| count_row(id, "", 20 - id as u64)).collect();
        rows.extend([count_row(0, "external", 5), count_row(10, "", 2), count_row(11, "", 1)]);
        let top = candidates(rows, 12, &[]).expect("decided by the counts");
        let kept: Vec<(Option<i64>, &str, i64)> =
            top.iter().map(|cp| (cp.account_id, cp.name.as_str(), cp.count)).collect();
        assert_eq!(kept.len(), 10, "{kept:?}");
        assert!(kept.contains(&(None, "external", 5)) && !kept.iter().any(|cp| cp.0 == Some(10)));
        // The tenth has as many entries as the last read: an unread one could come before it by name.
        let rows: Vec<CountRow> = (1..=12).map(|id| count_row(id, "", if id < 10 { 9 } else { 1 })).collect();
        assert!(candidates(rows, 12, &[]).is_none());
        // Fewer rows than the limit: every counterparty was read, ties or not.
        let rows: Vec<CountRow> = (1..=11).map(|id| count_row(id, "", 1)).collect();
        assert_eq!(candidates(rows, 12, &[]).unwrap().len(), 11);
        // Waiting entries lift a counterparty past the tied ones.
        let rows: Vec<CountRow> = (1..=12).map(|id| count_row(id, "", if id < 10 { 9 } else { 1 })).collect();
        let waiting: Vec<HistoryEntry> =
            (0..9).map(|n| waiting_entry(100 + n, 100 + n, "in", "transfer", Some(12), "twelve")).collect();
        let top = candidates(rows, 12, &waiting).expect("decided once the waiting entries count");
        assert_eq!(top.len(), 10);
        assert!(top.iter().any(|cp| cp.account_id == Some(12) && cp.count == 10 && cp.name == "twelve"));
    }
}
