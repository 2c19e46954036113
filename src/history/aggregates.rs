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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use rustc_hash::FxHashMap;

use super::clickhouse::ClickHouse;
use super::closed_days::{self, ClosedRead, DayRows, Sums, WindowTotals, DAY_US};
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

/// What a query of whole days adds to its `PREWHERE` for the filters, binds: direction code
/// (0: any) twice, kind ('' any) twice, counterparty (0: any) twice. On ClickHouse 18.16 the
/// conditions cost even when they hold for every row (a third of the query's CPU on a busy
/// account), so each such query has a second form without them, for a summary without filters
/// ([`DaysQuery`]).
macro_rules! day_filters {
    () => {
        "
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)"
    };
}

/// Counterparties' totals over whole days from the daily counterparty totals, without names
/// (costly to merge: a busy account has a row per counterparty and day), as `$columns`
/// (counterparty id, then key), grouped by `$group`, with the conditions `$filters`
/// ([`day_filters`] or none), rows restricted by `$restriction`. Binds: account, two days,
/// the filters' if any; then what the restriction and the query add.
macro_rules! days_counterparty_rows {
    ($columns:literal, $group:literal, $filters:expr, $($restriction:tt)*) => {
        concat!(
            "SELECT ",
            $columns,
            ", sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)",
            $filters,
            $($restriction)*,
            "
     GROUP BY ",
            $group
        )
    };
}

/// A query of whole days in its two forms: with the filters' conditions, and without.
struct DaysQuery {
    filtered: &'static str,
    unfiltered: &'static str,
}

/// Both forms of a query of whole days: `$make` called with [`day_filters`] and with nothing.
macro_rules! days_query {
    ($make:ident!($($before:tt)*), $($after:tt)*) => {
        DaysQuery {
            filtered: $make!($($before)* day_filters!(), $($after)*),
            unfiltered: $make!($($before)* "", $($after)*),
        }
    };
}

/// Whole days and the edges' entries of one counterparty read (binds as
/// [`days_counterparty_rows`], then the edges' as [`edge_entries`]), before they are grouped.
macro_rules! counterparty_rows {
    () => {
        concat!(
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
     )"
        )
    };
}

/// The restriction of a look-up to some counterparties, binds: account ids (-1 for none), then
/// external names ('' for none). (Sets rather than `has`: there may be thousands.)
macro_rules! only_counterparties {
    () => {
        "counterparty_id IN (SELECT toInt64(arrayJoin(?)))
            OR (counterparty_id = 0 AND counterparty_key IN (SELECT arrayJoin(?)))"
    };
}

/// Every counterparty's totals without its names, whole days from `daily_counterparty_totals`
/// and edges from the entries: the most entries first, at most `LIMIT`.
const COUNTERPARTY_COUNTS: &str = concat!(
    counterparty_rows!(),
    "
     GROUP BY counterparty_id, counterparty_key
     ORDER BY count DESC
     LIMIT ?"
);

/// [`COUNTERPARTY_COUNTS`] of the counterparties bound last ([`only_counterparties`]).
const COUNTERPARTY_COUNTS_OF: &str = concat!(
    counterparty_rows!(),
    "
     WHERE ",
    only_counterparties!(),
    "
     GROUP BY counterparty_id, counterparty_key"
);

/// The most entries first, at most `LIMIT`.
macro_rules! days_counterparty_counts {
    ($filters:expr,) => {
        concat!(
            days_counterparty_rows!("counterparty_id, '' AS no_key", "counterparty_id", $filters, ""),
            "
     ORDER BY count DESC
     LIMIT ?"
        )
    };
}

/// [`COUNTERPARTY_COUNTS`] over whole days alone (the partial days read from PostgreSQL), of
/// the counterparties with an account: grouped by the id alone, twice as fast on ClickHouse
/// 18.16 as by id and name. (Those without an account, id 0, come as one row, left out: they
/// are in [`DAYS_KINDS_AND_EXTERNALS`].)
const DAYS_COUNTERPARTY_COUNTS: DaysQuery = days_query!(days_counterparty_counts!(),);

/// The totals of whole days of the counterparties bound last ([`only_counterparties`]).
const DAYS_COUNTERPARTY_COUNTS_OF: DaysQuery = days_query!(
    days_counterparty_rows!("counterparty_id, counterparty_key", "counterparty_id, counterparty_key",),
    concat!("\n       AND (", only_counterparties!(), ")")
);

/// [`BY_KIND`] over whole days alone (the partial days read from PostgreSQL), rows of `part`
/// 1, with the totals of every counterparty without an account ([`DAYS_COUNTERPARTY_COUNTS`]
/// leaves them out: a few names, such as `external`) as rows of `part` 2, named: one query
/// instead of two, each of which costs ClickHouse 18.16 over a millisecond of its own. Binds:
/// account and two days, `$kind_filters`' ([`day_filters`] without the counterparty's), then the
/// same again with `$filters`' ([`day_filters`]).
macro_rules! days_kinds_and_externals {
    ($kind_filters:expr, $filters:expr) => {
        concat!(
            "SELECT toUInt8(1) AS part, kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)",
            $kind_filters,
            "
     GROUP BY kind
     UNION ALL
     SELECT toUInt8(2) AS part, counterparty_key AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)",
            $filters,
            " AND counterparty_id = 0
     GROUP BY counterparty_key"
        )
    };
}

const DAYS_KINDS_AND_EXTERNALS: DaysQuery = DaysQuery {
    filtered: days_kinds_and_externals!(
        "\n       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)",
        day_filters!()
    ),
    unfiltered: days_kinds_and_externals!("", ""),
};

/// [`BY_KIND_OF_COUNTERPARTY`] over whole days alone.
const DAYS_BY_KIND_OF_COUNTERPARTY: &str = "SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND counterparty_id = ?
     GROUP BY kind
     ORDER BY kind";

/// Counterparties read by their counts: enough that on a busy account, whose counterparties
/// mostly have an entry or two a month, the unread ones have at most one entry, and those of
/// the added entries rarely need a look-up of their own ([`candidates`]).
const COUNTED_MAX: usize = 4096;

#[derive(clickhouse::Row, serde::Deserialize, Debug, Clone)]
struct CountRow {
    counterparty_id: i64,
    counterparty_key: String,
    in_total: i64,
    out_total: i64,
    count: u64,
}

/// What the counts read decide of the top counterparties.
#[derive(Debug)]
enum Decision {
    /// Every counterparty that can be among the top ones, with its totals (names to come from
    /// PostgreSQL, except external ones: named by their key, and entries without an account
    /// carry no user name).
    Top(Vec<CounterpartyTotals>),
    /// These counterparties of the added entries may reach the top, and their counts over the
    /// rest of the range are needed first: external names, account ids.
    LookUp(Vec<String>, Vec<i64>),
    /// A counterparty left unread may have as many entries as the last of the top, and would
    /// come before it by name.
    Undecided,
}

/// An entry's amount as money in and money out.
fn in_and_out(entry: &HistoryEntry) -> (i64, i64) {
    if entry.direction == "in" {
        (entry.amount, 0)
    } else {
        (0, entry.amount)
    }
}

/// A counterparty's key among the totals: its account id, or 0 and its name (none: '').
type CounterpartyKey<'a> = (i64, &'a str);

/// The counterparties' counts and amounts in `added`, by key: (count, in, out).
fn added_totals(added: &[HistoryEntry]) -> HashMap<CounterpartyKey<'_>, (i64, i64, i64)> {
    let mut totals: HashMap<CounterpartyKey<'_>, (i64, i64, i64)> = HashMap::with_capacity(added.len());
    for entry in added {
        let key = match entry.counterparty_account_id {
            Some(id) => (id, ""),
            None => (0, entry.counterparty_name.as_str()),
        };
        let (amount_in, amount_out) = in_and_out(entry);
        let sums = totals.entry(key).or_default();
        *sums = (sums.0 + 1, sums.1 + amount_in, sums.2 + amount_out);
    }
    totals
}

/// The counterparties that can be among the top ones, from the rows read by their counts
/// (`unread_max`: the most entries a counterparty left unread can have, 0 when every one was
/// read) with the added entries, `added` (waiting, or the partial days read from PostgreSQL).
/// A counterparty of `added` that the rows lack has between its added count and that plus
/// `unread_max` (exactly its added count once `looked_up` has read it, too). Names are left
/// to PostgreSQL ([`super::summary::named`]), except external ones: their key.
fn candidates(rows: &[CountRow], unread_max: i64, looked_up: bool, added: &[HistoryEntry]) -> Decision {
    let mut added = added_totals(added);
    let mut totals: Vec<(CounterpartyKey<'_>, i64, i64, i64, bool)> = Vec::with_capacity(rows.len() + added.len());
    for row in rows {
        let key = (row.counterparty_id, row.counterparty_key.as_str());
        let (count, amount_in, amount_out) = added.remove(&key).unwrap_or_default();
        totals.push((key, row.count as i64 + count, row.in_total + amount_in, row.out_total + amount_out, true));
    }
    totals.extend(
        added.into_iter().map(|(key, (count, amount_in, amount_out))| (key, count, amount_in, amount_out, false)),
    );
    // At most the tenth count: a counterparty below it is not among the top ones.
    let mut counts: Vec<i64> = totals.iter().map(|total| total.1).collect();
    let tenth = TOP_COUNTERPARTIES_MAX as usize - 1;
    let last_of_top = if counts.len() > tenth { *counts.select_nth_unstable_by(tenth, |a, b| b.cmp(a)).1 } else { 0 };
    if unread_max > 0 && last_of_top <= unread_max {
        return Decision::Undecided;
    }
    if !looked_up && unread_max > 0 {
        let unsure: Vec<CounterpartyKey<'_>> =
            totals.iter().filter(|t| !t.4 && t.1 + unread_max >= last_of_top).map(|t| t.0).collect();
        if !unsure.is_empty() {
            let keys = unsure.iter().filter(|key| key.0 == 0).map(|key| key.1.to_owned()).collect();
            return Decision::LookUp(keys, unsure.iter().filter(|key| key.0 != 0).map(|key| key.0).collect());
        }
    }
    let top = totals
        .into_iter()
        .filter(|total| total.1 >= last_of_top)
        .map(|((id, key), count, in_total, out_total, _)| CounterpartyTotals {
            account_id: (id != 0).then_some(id),
            name: key.to_owned(),
            user_name: None,
            in_total,
            out_total,
            count,
        })
        .collect();
    Decision::Top(top)
}

impl From<KindRow> for PartRow {
    fn from(row: KindRow) -> Self {
        PartRow { part: 1, name: row.name, in_total: row.in_total, out_total: row.out_total, count: row.count }
    }
}

/// A row of [`DAYS_KINDS_AND_EXTERNALS`].
#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct PartRow {
    part: u8,
    name: String,
    in_total: i64,
    out_total: i64,
    count: u64,
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
        let date = closed_days::date_text;
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

    /// Whether any filter is set: queries of whole days then take their filtered form.
    fn filtered(&self) -> bool {
        self.direction != 0 || !self.kind.is_empty() || self.counterparty != 0
    }

    /// `query` of whole days in the form its filters need, with its binds (the counterparty's
    /// too when `of_counterparties`: [`day_filters`]).
    fn whole_days(
        &self,
        clickhouse: &ClickHouse,
        query: &DaysQuery,
        of_counterparties: bool,
    ) -> clickhouse::query::Query {
        let filtered = self.filtered();
        let sql = if filtered { query.filtered } else { query.unfiltered };
        // One thread each: a summary runs three of these at once, each reading a few granules,
        // and a second thread's hash table to merge costs more than it saves.
        let query = clickhouse.query(sql).with_setting("max_threads", "1");
        let query = query.bind(self.account_id).bind(self.days.0.as_str()).bind(self.days.1.as_str());
        match (filtered, of_counterparties) {
            (false, _) => query,
            (true, false) => query.bind(self.direction).bind(self.direction).bind(self.kind).bind(self.kind),
            (true, true) => query
                .bind(self.direction)
                .bind(self.direction)
                .bind(self.kind)
                .bind(self.kind)
                .bind(self.counterparty)
                .bind(self.counterparty),
        }
    }

    /// [`DAYS_KINDS_AND_EXTERNALS`] with its binds (for a summary without a counterparty).
    fn kinds_and_externals(&self, clickhouse: &ClickHouse) -> clickhouse::query::Query {
        let twice = self.whole_days(clickhouse, &DAYS_KINDS_AND_EXTERNALS, false);
        let again = twice.bind(self.account_id).bind(self.days.0.as_str()).bind(self.days.1.as_str());
        if self.filtered() {
            let again = again.bind(self.direction).bind(self.direction).bind(self.kind).bind(self.kind);
            again.bind(self.counterparty).bind(self.counterparty)
        } else {
            again
        }
    }

    /// The binds of [`counterparty_rows`].
    fn bind_counterparty_rows(&self, query: clickhouse::query::Query) -> clickhouse::query::Query {
        self.bind_edges(self.bind_days(query).bind(self.counterparty).bind(self.counterparty))
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
/// totals, the rest as [`summary_split`] says: the entries of the edge windows as `edges`
/// reads them from PostgreSQL (every entry there, the waiting ones included, so ClickHouse
/// reads no entry at all; `None` when there are too many), or else from ClickHouse's entries
/// with the entries still waiting in the outbox, `waiting`, added. ClickHouse reads the whole
/// days while `edges` runs. Either way every entry committed before the request counts once
/// (`waiting` is read from PostgreSQL before this, `edges` after it, with the same filters). The
/// top counterparties are usually decided by their counts alone and left to be named from
/// PostgreSQL ([`super::summary::named`]); when their counts cannot decide them, they come
/// named and ranked from ClickHouse.
pub async fn summary(
    clickhouse: &ClickHouse,
    account_id: AccountId,
    (range, filters): (TimeRange, &Filters),
    waiting: &[HistoryEntry],
    edges: impl Future<Output = anyhow::Result<Option<Vec<HistoryEntry>>>>,
    closed: Option<ClosedRead<'_>>,
) -> anyhow::Result<Unnamed> {
    let Some(split) = summary_split(range, waiting) else {
        return Ok(Unnamed { summary: with_waiting(Vec::new(), Vec::new(), waiting), to_name: false });
    };
    // On a cluster, the account's shard holds its entries and its totals.
    let clickhouse = &clickhouse.for_account(account_id);
    if split.days.is_none() {
        if let Some(edges) = edges.await? {
            return Ok(Unnamed { summary: with_waiting(Vec::new(), Vec::new(), &edges), to_name: false });
        }
    } else {
        let end = split.edges[1].1;
        let days = Binds::new(account_id, Split { edges: [(end, end), (end, end)], ..split }, filters, &[]);
        let (counts, edges) = tokio::join!(day_counts(clickhouse, (&days, split), filters, closed), edges);
        if let Some(edges) = edges? {
            if let Some(summary) = decide(clickhouse, &days, true, counts?, &edges).await? {
                return Ok(summary);
            }
        }
    }
    // Too many entries at the edges for PostgreSQL to hand over (or, rarely, counts that do
    // not decide the top): ClickHouse reads them too.
    let binds = Binds::new(account_id, split, filters, waiting);
    let counts = read_counts(clickhouse, &binds, filters, false).await?;
    let summary = decide(clickhouse, &binds, false, counts, waiting).await?;
    summary.context("a summary that read every entry decides")
}

/// The counts of the whole days of `split` (`binds` reads them all from ClickHouse): the closed
/// ones from memory ([`super::closed_days`]) when `closed` holds (or may fill) them all, with
/// ClickHouse's counts of the later ones; else all from ClickHouse.
async fn day_counts(
    clickhouse: &ClickHouse,
    (binds, split): (&Binds, Split),
    filters: &Filters,
    closed: Option<ClosedRead<'_>>,
) -> anyhow::Result<Counts> {
    let (Some((first, end)), Some(closed)) = (split.days, closed) else {
        return read_counts(clickhouse, binds, filters, true).await;
    };
    let mid = end.min(closed.end);
    if mid <= first {
        return read_counts(clickhouse, binds, filters, true).await;
    }
    let edge = split.edges[1].1;
    let later_binds =
        Binds::new(binds.account_id, Split { days: Some((mid, end)), edges: [(edge, edge); 2] }, filters, &[]);
    let later = async {
        match mid < end {
            true => read_counts(clickhouse, &later_binds, filters, true).await.map(Some),
            false => Ok(None),
        }
    };
    if filters.is_empty() {
        let window = closed.days.window(clickhouse, binds.account_id, (first, mid), closed.may_fill, COUNTED_MAX);
        let (window, later) = tokio::join!(window, later);
        return match (window?, later?) {
            (Some(window), later) if later.as_ref().is_none_or(|later| later.unread_max == 0) => {
                Ok(counts_with_window(window, later))
            }
            _ => read_counts(clickhouse, binds, filters, true).await,
        };
    }
    let kept = closed.days.read(clickhouse, binds.account_id, (first, mid), closed.may_fill);
    let (kept, later) = tokio::join!(kept, later);
    match (kept?, later?) {
        (Some(kept), later) if later.as_ref().is_none_or(|later| later.unread_max == 0) => {
            Ok(counts_with_closed(&kept, filters, later))
        }
        // Not kept (nor to be filled), or a day since with more counterparties than were read.
        _ => read_counts(clickhouse, binds, filters, true).await,
    }
}

/// The counts of a run of closed days summed in memory (its counterparties with the most
/// entries; the others are looked up there, [`decide`]), with those of the days since when
/// there are (every counterparty of theirs, with its count of the closed days added).
fn counts_with_window(window: Arc<WindowTotals>, later: Option<Counts>) -> Counts {
    let later = later.unwrap_or_else(Counts::none);
    let mut kinds: BTreeMap<&str, Sums> = window.kinds.iter().map(|(name, sums)| (name.as_str(), *sums)).collect();
    for kind in &later.kinds {
        add_sums(kinds.entry(kind.name.as_str()).or_default(), kind.in_total, kind.out_total, kind.count as u64);
    }
    let kinds = kinds.into_iter().map(|(name, sums)| sums_totals(name, sums)).collect();
    let mut counts: Vec<CountRow> = Vec::with_capacity(window.top.len() + later.counts.len());
    let mut at: FxHashMap<(i64, &str), usize> = FxHashMap::default();
    for ((counterparty_id, key), sums) in &window.top {
        at.insert((*counterparty_id, key.as_str()), counts.len());
        counts.push(sums_row((*counterparty_id, key), *sums));
    }
    for row in &later.counts {
        let key = (row.counterparty_id, row.counterparty_key.as_str());
        let index = match at.get(&key) {
            Some(index) => *index,
            None => {
                counts.push(sums_row((key.0, key.1), window.of(key).unwrap_or_default()));
                counts.len() - 1
            }
        };
        let sums = &mut counts[index];
        (sums.in_total, sums.out_total, sums.count) =
            (sums.in_total + row.in_total, sums.out_total + row.out_total, sums.count + row.count);
    }
    let unread_max = window.rest_max as i64;
    Counts { kinds, counts, unread_max, window: Some(window) }
}

fn add_sums(sums: &mut Sums, in_total: i64, out_total: i64, count: u64) {
    (sums.in_total, sums.out_total, sums.count) =
        (sums.in_total + in_total, sums.out_total + out_total, sums.count + count);
}

fn sums_totals(name: &str, sums: Sums) -> Totals {
    Totals { name: name.to_owned(), in_total: sums.in_total, out_total: sums.out_total, count: sums.count as i64 }
}

fn sums_row((counterparty_id, key): (i64, &str), sums: Sums) -> CountRow {
    CountRow {
        counterparty_id,
        counterparty_key: key.to_owned(),
        in_total: sums.in_total,
        out_total: sums.out_total,
        count: sums.count,
    }
}

/// The counts of closed days kept in memory, with those of the days since when there are.
fn counts_with_closed(kept: &[Arc<DayRows>], filters: &Filters, later: Option<Counts>) -> Counts {
    let (mut kinds, mut counterparties) = closed_days::totals(kept, filters);
    let later = later.unwrap_or_else(Counts::none);
    for kind in &later.kinds {
        add_sums(kinds.entry(kind.name.as_str()).or_default(), kind.in_total, kind.out_total, kind.count as u64);
    }
    for row in &later.counts {
        let key = (row.counterparty_id, row.counterparty_key.as_str());
        add_sums(counterparties.entry(key).or_default(), row.in_total, row.out_total, row.count);
    }
    let kinds = kinds.into_iter().map(|(name, sums)| sums_totals(name, sums)).collect();
    let counts = counterparties.into_iter().map(|(key, sums)| sums_row(key, sums)).collect();
    Counts { kinds, counts, unread_max: 0, window: None }
}

/// What [`read_counts`] read: the totals by kind, the counterparties with the most entries
/// (and, over whole days, every one without an account), and the most entries one left unread
/// can have (0 when none was).
struct Counts {
    kinds: Vec<Totals>,
    counts: Vec<CountRow>,
    unread_max: i64,
    /// The closed days' sums these counts are of, where the counterparties left unread are
    /// looked up ([`counts_with_window`]).
    window: Option<Arc<WindowTotals>>,
}

impl Counts {
    fn none() -> Counts {
        Counts { kinds: Vec::new(), counts: Vec::new(), unread_max: 0, window: None }
    }
}

/// The totals by kind and the counterparties with the most entries, over whole days alone
/// (`days_only`: the edges are read from PostgreSQL) or with the edges' entries too.
async fn read_counts(
    clickhouse: &ClickHouse,
    binds: &Binds,
    filters: &Filters,
    days_only: bool,
) -> anyhow::Result<Counts> {
    // Without edges to read, queries of the daily totals alone: the UNION with an empty read of
    // the entries still costs ClickHouse 18.16 several milliseconds.
    let by_kind = match (filters.counterparty_account_id, days_only) {
        (Some(counterparty), true) => {
            Some(binds.bind_days(clickhouse.query(DAYS_BY_KIND_OF_COUNTERPARTY)).bind(counterparty))
        }
        (Some(counterparty), false) => {
            Some(binds.bind_edges(binds.bind_days(clickhouse.query(BY_KIND_OF_COUNTERPARTY)).bind(counterparty)))
        }
        // With the counterparties without an account: the counts below leave them out.
        (None, true) => None,
        (None, false) => Some(binds.bind_edges(binds.bind_days(clickhouse.query(BY_KIND)))),
    };
    let counts = if days_only {
        binds.whole_days(clickhouse, &DAYS_COUNTERPARTY_COUNTS, true)
    } else {
        binds.bind_counterparty_rows(clickhouse.query(COUNTERPARTY_COUNTS))
    };
    let counts = counts.bind(COUNTED_MAX as u64);
    let parts = async {
        match by_kind {
            Some(query) => Ok(query.fetch_all::<KindRow>().await?.into_iter().map(PartRow::from).collect()),
            None => binds.kinds_and_externals(clickhouse).fetch_all::<PartRow>().await,
        }
    };
    let (parts, mut counts) = tokio::try_join!(parts, counts.fetch_all::<CountRow>())?;
    let unread_max = if counts.len() < COUNTED_MAX { 0 } else { counts.last().map_or(0, |row| row.count as i64) };
    if days_only {
        // The one row of every counterparty without an account, counted by name in `parts`.
        counts.retain(|row| row.counterparty_id != 0);
    }
    let (kinds, externals): (Vec<PartRow>, Vec<PartRow>) = parts.into_iter().partition(|row| row.part == 1);
    counts.extend(externals.into_iter().map(|row| CountRow {
        counterparty_id: 0,
        counterparty_key: row.name,
        in_total: row.in_total,
        out_total: row.out_total,
        count: row.count,
    }));
    let kinds = kinds
        .into_iter()
        .map(|row| Totals { name: row.name, in_total: row.in_total, out_total: row.out_total, count: row.count as i64 })
        .collect();
    Ok(Counts { kinds, counts, unread_max, window: None })
}

/// The summary from what [`read_counts`] read and the entries it did not, `added`: the top
/// counterparties decided by their counts (after a look-up of those of `added` that may reach
/// the top unseen), else named and ranked by ClickHouse, which needs the names of `added`: None
/// over whole days alone (`days_only`, whose `added` carry their totals only).
async fn decide(
    clickhouse: &ClickHouse,
    binds: &Binds,
    days_only: bool,
    Counts { kinds, mut counts, unread_max, window }: Counts,
    added: &[HistoryEntry],
) -> anyhow::Result<Option<Unnamed>> {
    let decision = match candidates(&counts, unread_max, false, added) {
        // Every counterparty not among the counts has entries of the closed days alone.
        Decision::LookUp(keys, ids) if window.is_some() => {
            let window = window.as_deref().context("a window")?;
            let found = keys.iter().map(|key| (0, key.as_str())).chain(ids.iter().map(|id| (*id, "")));
            counts.extend(found.filter_map(|key| Some(sums_row(key, window.of(key)?))).collect::<Vec<_>>());
            candidates(&counts, unread_max, true, added)
        }
        Decision::LookUp(keys, ids) => {
            // Placeholders that match nothing keep both arrays' types known.
            let ids: Vec<i64> = std::iter::once(-1).chain(ids).collect();
            let keys: Vec<String> = std::iter::once(String::new()).chain(keys).collect();
            let query = if days_only {
                binds.whole_days(clickhouse, &DAYS_COUNTERPARTY_COUNTS_OF, true)
            } else {
                binds.bind_counterparty_rows(clickhouse.query(COUNTERPARTY_COUNTS_OF))
            };
            let query = query.bind(ids).bind(keys);
            counts.extend(query.fetch_all::<CountRow>().await?);
            candidates(&counts, unread_max, true, added)
        }
        decision => decision,
    };
    if let Decision::Top(top) = decision {
        let summary = Summary::from_parts(kinds_with_waiting(kinds, added), top);
        return Ok(Some(Unnamed { summary, to_name: true }));
    }
    if days_only {
        return Ok(None);
    }
    let counterparties = named_counterparties(clickhouse, binds, added).await?;
    Ok(Some(Unnamed { summary: with_waiting(kinds, counterparties, added), to_name: false }))
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
        let (amount_in, amount_out) = in_and_out(entry);
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
        let (amount_in, amount_out) = in_and_out(entry);
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

    fn top(decision: Decision) -> Vec<CounterpartyTotals> {
        match decision {
            Decision::Top(top) => top,
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn the_counts_decide_the_top_unless_a_counterparty_left_unread_could_tie_its_last_place() {
        // Twelve rows of a limit of twelve: the last read (1 entry) bounds the unread ones.
        let mut rows: Vec<CountRow> = (1..=9).map(|id| count_row(id, "", 20 - id as u64)).collect();
        rows.extend([count_row(0, "external", 5), count_row(10, "", 2), count_row(11, "", 1)]);
        let kept: Vec<(Option<i64>, String, i64)> =
            top(candidates(&rows, 1, false, &[])).into_iter().map(|cp| (cp.account_id, cp.name, cp.count)).collect();
        assert_eq!(kept.len(), 10, "{kept:?}");
        assert!(kept.contains(&(None, "external".to_owned(), 5)) && !kept.iter().any(|cp| cp.0 == Some(10)));
        // The tenth has as many entries as the last read: an unread one could come before it by name.
        let rows: Vec<CountRow> = (1..=12).map(|id| count_row(id, "", if id < 10 { 9 } else { 1 })).collect();
        assert!(matches!(candidates(&rows, 1, false, &[]), Decision::Undecided));
        // Every counterparty read (nothing unread): ties or not, the counts decide.
        let rows: Vec<CountRow> = (1..=11).map(|id| count_row(id, "", 1)).collect();
        assert_eq!(top(candidates(&rows, 0, false, &[])).len(), 11);
        // Added entries lift a counterparty that was read past the tied ones.
        let rows: Vec<CountRow> = (1..=12).map(|id| count_row(id, "", if id < 10 { 9 } else { 1 })).collect();
        let added: Vec<HistoryEntry> =
            (0..9).map(|n| waiting_entry(100 + n, 100 + n, "in", "transfer", Some(12), "twelve")).collect();
        let kept = top(candidates(&rows, 1, false, &added));
        assert_eq!(kept.len(), 10);
        assert!(kept.iter().any(|cp| cp.account_id == Some(12) && cp.count == 10 && cp.in_total == 90));
    }

    #[test]
    fn counterparties_of_the_added_entries_that_were_not_read_are_looked_up_when_they_may_reach_the_top() {
        // Ten counterparties with 5 entries each, the unread ones with at most 2.
        let rows: Vec<CountRow> = (1..=10).map(|id| count_row(id, "", 5)).chain([count_row(11, "", 2)]).collect();
        let entry = |id: i64, counterparty: Option<i64>, name: &str| {
            waiting_entry(id, id, "in", if counterparty.is_some() { "transfer" } else { "charge" }, counterparty, name)
        };
        // Two added entries of account 50 (unread): at most 4, below the tenth's 5.
        let added = [entry(1, Some(50), "fifty"), entry(2, Some(50), "fifty")];
        assert_eq!(top(candidates(&rows, 2, false, &added)).len(), 10);
        // Three, and three of an external name: up to 5, a tie with the tenth; both are looked up.
        let added: Vec<HistoryEntry> = (1..=3)
            .map(|n| entry(n, Some(50), "fifty"))
            .chain((4..=6).map(|n| entry(n, None, "bank")))
            .chain([entry(7, Some(11), "eleven")])
            .collect();
        match candidates(&rows, 2, false, &added) {
            Decision::LookUp(keys, ids) => assert_eq!((keys, ids), (vec!["bank".to_owned()], vec![50])),
            other => panic!("{other:?}"),
        }
        // The look-up found two more of account 50 and none of the name: 50 leads, the name is out.
        let mut looked_up = rows.clone();
        looked_up.push(count_row(50, "", 2));
        let kept = top(candidates(&looked_up, 2, true, &added));
        assert_eq!(kept.iter().map(|cp| cp.count).max(), Some(5));
        assert!(kept.iter().any(|cp| cp.account_id == Some(50) && cp.count == 5));
        assert!(!kept.iter().any(|cp| cp.name == "bank"));
        // With nothing unread, an added counterparty's count is its own: no look-up.
        assert!(matches!(candidates(&rows, 0, false, &added), Decision::Top(_)));
    }
}
