//! The entries whose counterparty account repeats (ClickHouse `counterparty_repeats`, see
//! `clickhouse/0013_counterparty_repeats.sql`): how the forwarder computes their rows from
//! PostgreSQL and writes them, and how a summary of up to [`WINDOW_DAYS`] days counts its
//! repeating counterparties from them.
//!
//! An entry `x` has a row of level 3 when at least three other entries of its account with
//! the same counterparty account lie within [`WINDOW_DAYS`] of it (`near(x)`, counted up to
//! [`LEVEL_MAX`]; lower levels would work alike, and nothing reads them, so none are written).
//! Two entries of a range of at most [`WINDOW_DAYS`] are within that of each other, so a
//! counterparty with more than three entries in such a range has a row for each of them: the
//! rows of the range count it exactly, and a counterparty without them has at most three
//! entries there.
//!
//! Why each entry gets its rows, whatever order entries commit and move in: take `x` and `S`,
//! its `min(near(x), 3)` nearest neighbours. The last of `S` and `x` to be forwarded finds the
//! others committed. If it is `x`, it counts them itself. If it is `y` of `S`, every entry
//! between `x` and `y` is nearer to `x`, so in `S`: at most two, and `x` is among the three
//! nearest of `y` on that side, which `y` looks up and counts again (over the six nearest of
//! `y` on either side within twice the window, which hold the three nearest of `x` on either
//! side). A row written twice (a replay, an entry near several others) is counted once
//! (`uniqExact(entry_id)`).
//!
//! The guarantee needs every entry of the account in ClickHouse: a summary takes this path
//! only when none of the account's entries waits in the outbox.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clickhouse::ClickHouse;
use super::entry::{ClickHouseEntry, DIRECTION_IN, DIRECTION_OUT};
use super::summary::CountRow;
use crate::domain::ids::AccountId;

/// How far apart two entries may be to count as a repeat, and the longest summary range this
/// answers.
pub const WINDOW_DAYS: i64 = 31;
/// The level written: the top counterparties of a busy account have more entries.
pub const LEVEL_MAX: u8 = 3;
const WINDOW_US: i64 = WINDOW_DAYS * 86_400 * 1_000_000;

/// A row of ClickHouse `counterparty_repeats`, in column order.
#[derive(clickhouse::Row, serde::Serialize, Debug, Clone, PartialEq)]
pub struct RepeatRow {
    /// `Date`: days since the epoch (UTC).
    pub day: u16,
    pub account_id: i64,
    pub level: u8,
    pub at_us: i64,
    pub entry_id: u64,
    pub counterparty_id: i64,
    pub kind: String,
    /// `Enum8('in' = 1, 'out' = 2)`.
    pub direction: i8,
    pub amount: i64,
}

/// An entry of an account and counterparty of a batch: one of the batch, or one near them.
#[derive(sqlx::FromRow, Debug, Clone)]
struct Neighbour {
    id: i64,
    account_id: i64,
    at: DateTime<Utc>,
    direction: String,
    amount: i64,
    kind: String,
    counterparty_account_id: i64,
}

/// How many entries are read on either side of a batch's entries of one account and
/// counterparty: the three nearest, whose rows an entry writes, and the three nearest of those
/// on the far side, which their counts need.
const READ_EACH_SIDE: i64 = 2 * LEVEL_MAX as i64;

/// The rows for `entries` (a forwarder batch) and their neighbours: for each entry with a
/// counterparty account, itself and its three nearest entries of the same account and
/// counterparty on either side within [`WINDOW_DAYS`], each with its row when it has
/// [`LEVEL_MAX`] others within [`WINDOW_DAYS`]. The counting is done here, over what
/// [`read_around`] reads.
pub async fn rows_for(conn: &mut PgConnection, entries: &[ClickHouseEntry]) -> anyhow::Result<Vec<RepeatRow>> {
    let batch: Vec<&ClickHouseEntry> = entries.iter().filter(|entry| entry.counterparty_account_id.is_some()).collect();
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs: HashMap<(i64, i64), Vec<Neighbour>> = HashMap::new();
    for neighbour in read_around(conn, &batch).await? {
        pairs.entry((neighbour.account_id, neighbour.counterparty_account_id)).or_default().push(neighbour);
    }
    for around in pairs.values_mut() {
        around.sort_by_key(|neighbour| (neighbour.at, neighbour.id));
    }
    let mut rows = Vec::new();
    let mut written = std::collections::HashSet::new();
    for entry in batch {
        let pair = (entry.account_id.get(), entry.counterparty_account_id.unwrap_or_default());
        let Some(around) = pairs.get(&pair) else { continue };
        for (neighbour, near) in near_counts(entry.entry_id as i64, around) {
            if written.insert(neighbour.id) {
                rows.extend(levels_of(neighbour, near)?);
            }
        }
    }
    Ok(rows)
}

/// For each account and counterparty of `batch`: its entries from the batch's first to its
/// last time (the batch's own, and any between), and the [`READ_EACH_SIDE`] nearest before and
/// after within twice [`WINDOW_DAYS`]. One statement, three short reads of PostgreSQL's index
/// by account and counterparty per pair, each bounded on both sides so that it visits only the
/// partitions of its months. A busy pair with many entries in a batch is read once. Entries
/// after the transaction's start are left out (so are the months after it): those entries
/// were not forwarded before this batch, and their own batch will count this one.
async fn read_around(conn: &mut PgConnection, batch: &[&ClickHouseEntry]) -> anyhow::Result<Vec<Neighbour>> {
    let accounts: Vec<i64> = batch.iter().map(|entry| entry.account_id.get()).collect();
    let counterparties: Vec<i64> = batch.iter().filter_map(|entry| entry.counterparty_account_id).collect();
    let ats = batch
        .iter()
        .map(|entry| {
            DateTime::from_timestamp_micros(entry.at_us).ok_or_else(|| anyhow::anyhow!("entry time out of range"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let columns = "id, account_id, at, direction::text AS direction, amount, kind, counterparty_account_id";
    let of_pair = "FROM statement_entries WHERE account_id = p.account_id AND counterparty_account_id = p.counterparty";
    Ok(sqlx::query_as(&format!(
        "WITH pairs AS (
             SELECT account_id, counterparty, min(at) AS low, max(at) AS high
             FROM unnest($1::int8[], $2::int8[], $3::timestamptz[]) AS b(account_id, counterparty, at)
             GROUP BY account_id, counterparty
         )
         SELECT n.* FROM pairs p CROSS JOIN LATERAL (
             (SELECT {columns} {of_pair} AND at >= p.low - $4 * interval '1 microsecond' AND at < p.low
              ORDER BY at DESC, id DESC LIMIT $5)
             UNION ALL
             (SELECT {columns} {of_pair} AND at >= p.low AND at <= p.high)
             UNION ALL
             (SELECT {columns} {of_pair} AND at > p.high AND at <= least(p.high + $4 * interval '1 microsecond', now())
              ORDER BY at, id LIMIT $5)
         ) n"
    ))
    .bind(&accounts)
    .bind(&counterparties)
    .bind(&ats)
    .bind((2 * WINDOW_US) as f64)
    .bind(READ_EACH_SIDE)
    .fetch_all(&mut *conn)
    .await?)
}

/// For the entry `of` and its three nearest on either side within [`WINDOW_DAYS`] in
/// `around` (the entries of its account and counterparty read, sorted by time), how many
/// others each has within [`WINDOW_DAYS`], at most [`LEVEL_MAX`] (so only its three nearest on
/// either side are looked at).
fn near_counts(of: i64, around: &[Neighbour]) -> Vec<(&Neighbour, i64)> {
    let Some(centre) = around.iter().position(|neighbour| neighbour.id == of) else { return Vec::new() };
    let within =
        |a: &Neighbour, b: &Neighbour| (a.at - b.at).num_microseconds().is_some_and(|us| us.abs() <= WINDOW_US);
    let side = usize::from(LEVEL_MAX);
    let span = |index: usize| index.saturating_sub(side)..=(index + side).min(around.len() - 1);
    span(centre)
        .filter(|&index| within(&around[index], &around[centre]))
        .map(|index| {
            let near = span(index).filter(|&other| other != index && within(&around[other], &around[index])).count();
            (&around[index], (near as i64).min(i64::from(LEVEL_MAX)))
        })
        .collect()
}

/// The rows of one entry: its row of the level written, [`LEVEL_MAX`], when it has that many
/// near entries.
fn levels_of(entry: &Neighbour, near: i64) -> anyhow::Result<Vec<RepeatRow>> {
    let at_us = entry.at.timestamp_micros();
    let day = u16::try_from(at_us.div_euclid(86_400 * 1_000_000)).map_err(|_| anyhow::anyhow!("day out of range"))?;
    let direction = match entry.direction.as_str() {
        "in" => DIRECTION_IN,
        "out" => DIRECTION_OUT,
        other => anyhow::bail!("unknown direction {other:?}"),
    };
    let written = (near >= i64::from(LEVEL_MAX)).then_some(LEVEL_MAX);
    Ok(written
        .into_iter()
        .map(|level| RepeatRow {
            day,
            account_id: entry.account_id,
            level,
            at_us,
            entry_id: entry.id as u64,
            counterparty_id: entry.counterparty_account_id,
            kind: entry.kind.clone(),
            direction,
            amount: entry.amount,
        })
        .collect())
}

/// Writes `rows` into `clickhouse` (one server: the shard of their accounts).
pub async fn insert(clickhouse: &ClickHouse, rows: &[&RepeatRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = clickhouse.client().insert::<RepeatRow>("counterparty_repeats").await?;
    for row in rows {
        insert.write(*row).await?;
    }
    insert.end().await?;
    Ok(())
}

/// The counterparties of an account with more than `level` entries in `[low_us, high_us)`
/// (at most [`WINDOW_DAYS`] long): their entries counted once each (`uniqExact`, the rows of
/// an entry written twice being alike), their money left to PostgreSQL (a few entries each,
/// on its index by account and counterparty: cheaper than reading the amounts here). Binds:
/// account, level, first and last day, low and high, then `$filters` ([`FILTERS`]), level.
macro_rules! repeat_counts {
    ($filters:expr) => {
        concat!(
            "SELECT counterparty_id, uniqExact(entry_id) AS count
     FROM counterparty_repeats
     PREWHERE account_id = ? AND level = ? AND day >= toDate(?) AND day <= toDate(?) AND at_us >= ? AND at_us < ?",
            $filters,
            "
     GROUP BY counterparty_id
     HAVING count > ?"
        )
    };
}

/// The direction (0: any) and kind ('': any) filters: left out when neither is set, for on
/// ClickHouse 18.16 they cost even when they hold for every row.
macro_rules! filters {
    () => {
        "
     WHERE (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)"
    };
}

const REPEAT_COUNTS: &str = repeat_counts!("");
const REPEAT_COUNTS_FILTERED: &str = repeat_counts!(filters!());

/// A row of [`REPEAT_COUNTS`].
#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct RepeatCount {
    counterparty_id: i64,
    count: u64,
}

/// The range of a summary this can answer, `[low_us, high_us)`, when it is at most
/// [`WINDOW_DAYS`] long; a range without an end (`open_end_now`: the request's time) ends an
/// hour after the request, for no entry is later.
pub fn window((low_us, high_us): (i64, i64), open_end_now: Option<i64>) -> Option<(i64, i64)> {
    let high_us = open_end_now.map_or(high_us, |now| high_us.min(now.saturating_add(OPEN_END_MARGIN_US)));
    (high_us - low_us <= WINDOW_US).then_some((low_us, high_us))
}

/// The counterparties of `account_id` with more than `level` entries in `window` that pass
/// the filters, `(direction code or 0, kind or '')`, with their counts (their money is 0: see
/// [`REPEAT_COUNTS`]).
pub(crate) async fn counts(
    clickhouse: &ClickHouse,
    account_id: AccountId,
    (low_us, high_us): (i64, i64),
    (direction, kind): (i8, &str),
    level: u8,
) -> anyhow::Result<Vec<CountRow>> {
    let date =
        |us: i64| DateTime::from_timestamp_micros(us).map(|at| at.format("%Y-%m-%d").to_string()).unwrap_or_default();
    let filtered = direction != 0 || !kind.is_empty();
    // One thread: a few hundred rows to read, and a summary runs another query meanwhile.
    let query = clickhouse
        .query(if filtered { REPEAT_COUNTS_FILTERED } else { REPEAT_COUNTS })
        .with_setting("max_threads", "1");
    let query = query.bind(account_id).bind(level).bind(date(low_us)).bind(date(high_us.saturating_sub(1)));
    let mut query = query.bind(low_us).bind(high_us);
    if filtered {
        query = query.bind(direction).bind(direction).bind(kind).bind(kind);
    }
    let rows = query.bind(u64::from(level)).fetch_all::<RepeatCount>().await?;
    Ok(rows
        .into_iter()
        .map(|row| CountRow {
            counterparty_id: row.counterparty_id,
            counterparty_key: String::new(),
            in_total: 0,
            out_total: 0,
            count: row.count,
        })
        .collect())
}

/// Accounts whose repeats did not decide a summary lately, and when: their summaries count
/// every counterparty at once for [`UNDECIDED_FOR`] (an account with many counterparties of
/// two or three entries, and none of more, would otherwise read its repeats for nothing each
/// time). Per process; a hint, never a result.
static UNDECIDED: LazyLock<RwLock<HashMap<i64, Instant>>> = LazyLock::new(|| RwLock::new(HashMap::new()));
const UNDECIDED_FOR: Duration = Duration::from_secs(3_600);
/// The accounts [`UNDECIDED`] keeps before it starts over.
const UNDECIDED_MAX: usize = 10_000;

/// Whether the repeats may decide a summary of `account_id` (they did not lately).
pub fn may_decide(account_id: AccountId) -> bool {
    let undecided = UNDECIDED.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    undecided.get(&account_id.get()).is_none_or(|since| since.elapsed() > UNDECIDED_FOR)
}

/// The repeats did not decide a summary of `account_id`.
pub fn did_not_decide(account_id: AccountId) {
    let mut undecided = UNDECIDED.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if undecided.len() >= UNDECIDED_MAX {
        undecided.clear();
    }
    undecided.insert(account_id.get(), Instant::now());
}

/// How far past the request's time a range without an end is read: entries carry the time
/// of the server that wrote them, and servers' clocks differ by far less.
const OPEN_END_MARGIN_US: i64 = 3_600 * 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_up_to_the_window_is_answered() {
        assert_eq!(window((0, WINDOW_US), None), Some((0, WINDOW_US)));
        assert_eq!(window((5, WINDOW_US + 6), None), None);
        let now = WINDOW_US - OPEN_END_MARGIN_US;
        assert_eq!(window((0, i64::MAX), Some(now)), Some((0, WINDOW_US)));
        assert_eq!(window((0, i64::MAX), Some(now + 1)), None);
    }

    fn neighbour(id: i64, day: i64) -> Neighbour {
        Neighbour {
            id,
            account_id: 4,
            at: DateTime::from_timestamp(86_400 * day + 5, 0).unwrap(),
            direction: "out".to_owned(),
            amount: 70,
            kind: "transfer".to_owned(),
            counterparty_account_id: 8,
        }
    }

    #[test]
    fn an_entry_gets_its_row_with_three_near_entries() {
        assert!(levels_of(&neighbour(9, 3), 2).unwrap().is_empty());
        let rows = levels_of(&neighbour(9, 3), 3).unwrap();
        assert_eq!(rows.iter().map(|row| row.level).collect::<Vec<_>>(), [3]);
        assert_eq!((rows[0].day, rows[0].direction, rows[0].entry_id), (3, DIRECTION_OUT, 9));
    }

    #[test]
    fn the_entry_and_its_three_nearest_each_side_within_the_window_are_counted_over_all_read() {
        // Days: 0 (too far from 40 for a row, but near 20 and 25), 20, 25, 38, 40 (the entry),
        // 41, 42, 43, 44 (beyond the three nearest on that side), 90 (out of the window).
        let days = [0, 20, 25, 38, 40, 41, 42, 43, 44, 90];
        let around: Vec<Neighbour> = days.iter().enumerate().map(|(i, &day)| neighbour(i as i64, day)).collect();
        let counted: Vec<(i64, i64)> = near_counts(4, &around).into_iter().map(|(n, near)| (n.id, near)).collect();
        // 20: 0, 25, 38, 40, 41... (capped at 3); 25 likewise; 38..43 likewise.
        assert_eq!(counted, [(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (6, 3), (7, 3)]);
        let sparse: Vec<Neighbour> = [0, 31, 62].iter().enumerate().map(|(i, &day)| neighbour(i as i64, day)).collect();
        let counted: Vec<(i64, i64)> = near_counts(1, &sparse).into_iter().map(|(n, near)| (n.id, near)).collect();
        assert_eq!(counted, [(0, 1), (1, 2), (2, 1)]);
        assert!(near_counts(99, &sparse).is_empty());
    }
}
