//! The entries whose counterparty account repeats (ClickHouse `counterparty_repeats`, see
//! `clickhouse/0013_counterparty_repeats.sql`): how the forwarder computes their rows from
//! PostgreSQL and writes them, and how a summary of up to [`WINDOW_DAYS`] days counts its
//! repeating counterparties from them.
//!
//! An entry `x` has a row of each level from 1 up to `near(x)`: how many other entries of its
//! account with the same counterparty account lie within [`WINDOW_DAYS`] of it, counted up to
//! [`LEVEL_MAX`]. Two entries of a range of at most [`WINDOW_DAYS`] are within that of each
//! other, so a counterparty with more than L entries in such a range has a row of level L for
//! each of them: the level L rows of the range count it exactly, and a counterparty without
//! them has at most L entries there.
//!
//! Why each entry gets its rows, whatever order entries commit and move in: take `x` and `S`,
//! its `min(near(x), 3)` nearest neighbours. The last of `S` and `x` to be forwarded finds the
//! others committed. If it is `x`, it counts them itself. If it is `y` of `S`, every entry
//! between `x` and `y` is nearer to `x`, so in `S`: at most two, and `x` is among the three
//! nearest of `y` on that side, which `y` looks up and counts again. A row written twice
//! (a replay, an entry near several others) is read once (`LIMIT 1 BY entry_id`).
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
/// The highest level written: the top counterparties of a busy account have more entries.
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

#[derive(sqlx::FromRow)]
struct Neighbour {
    id: i64,
    account_id: i64,
    at: DateTime<Utc>,
    direction: String,
    amount: i64,
    kind: String,
    counterparty_account_id: i64,
    near: i64,
}

/// The rows for `entries` (a forwarder batch) and their neighbours: each entry with a
/// counterparty account, the three nearest other entries of the same account and counterparty
/// on either side within [`WINDOW_DAYS`], and for each of these how many others it has
/// within [`WINDOW_DAYS`] (up to [`LEVEL_MAX`]). One statement, on the index of entries by
/// account and counterparty.
pub async fn rows_for(conn: &mut PgConnection, entries: &[ClickHouseEntry]) -> anyhow::Result<Vec<RepeatRow>> {
    let with_counterparty: Vec<&ClickHouseEntry> =
        entries.iter().filter(|entry| entry.counterparty_account_id.is_some()).collect();
    if with_counterparty.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = with_counterparty.iter().map(|entry| entry.entry_id as i64).collect();
    let accounts: Vec<i64> = with_counterparty.iter().map(|entry| entry.account_id.get()).collect();
    let ats = with_counterparty
        .iter()
        .map(|entry| {
            DateTime::from_timestamp_micros(entry.at_us).ok_or_else(|| anyhow::anyhow!("entry time out of range"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counterparties: Vec<i64> = with_counterparty.iter().filter_map(|entry| entry.counterparty_account_id).collect();
    let neighbours: Vec<Neighbour> = sqlx::query_as(
        "WITH batch AS (
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::timestamptz[], $4::int8[])
                 AS b(id, account_id, at, counterparty)
         ), touched AS (
             SELECT id, at FROM batch
             UNION
             SELECT n.id, n.at FROM batch b CROSS JOIN LATERAL (
                 SELECT id, at FROM statement_entries
                 WHERE account_id = b.account_id AND counterparty_account_id = b.counterparty
                   AND at >= b.at - $5 * interval '1 microsecond' AND (at, id) < (b.at, b.id)
                 ORDER BY at DESC, id DESC LIMIT $6
             ) n
             UNION
             SELECT n.id, n.at FROM batch b CROSS JOIN LATERAL (
                 SELECT id, at FROM statement_entries
                 WHERE account_id = b.account_id AND counterparty_account_id = b.counterparty
                   AND at <= b.at + $5 * interval '1 microsecond' AND (at, id) > (b.at, b.id)
                 ORDER BY at, id LIMIT $6
             ) n
         )
         SELECT e.id, e.account_id, e.at, e.direction::text AS direction, e.amount, e.kind,
                e.counterparty_account_id,
                (SELECT count(*) FROM (
                     SELECT 1 FROM statement_entries n
                     WHERE n.account_id = e.account_id AND n.counterparty_account_id = e.counterparty_account_id
                       AND n.at >= e.at - $5 * interval '1 microsecond'
                       AND n.at <= e.at + $5 * interval '1 microsecond' AND n.id <> e.id
                     LIMIT $6
                 ) others) AS near
         FROM touched t JOIN statement_entries e ON e.id = t.id AND e.at = t.at
         WHERE e.counterparty_account_id IS NOT NULL",
    )
    .bind(&ids)
    .bind(&accounts)
    .bind(&ats)
    .bind(&counterparties)
    .bind(WINDOW_US as f64)
    .bind(i64::from(LEVEL_MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut rows = Vec::new();
    for neighbour in neighbours {
        rows.extend(levels_of(&neighbour)?);
    }
    Ok(rows)
}

/// The rows of one entry: one per level up to its count of near entries.
fn levels_of(entry: &Neighbour) -> anyhow::Result<Vec<RepeatRow>> {
    let at_us = entry.at.timestamp_micros();
    let day = u16::try_from(at_us.div_euclid(86_400 * 1_000_000)).map_err(|_| anyhow::anyhow!("day out of range"))?;
    let direction = match entry.direction.as_str() {
        "in" => DIRECTION_IN,
        "out" => DIRECTION_OUT,
        other => anyhow::bail!("unknown direction {other:?}"),
    };
    let top = u8::try_from(entry.near.clamp(0, i64::from(LEVEL_MAX))).unwrap_or(LEVEL_MAX);
    Ok((1..=top)
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

    #[test]
    fn an_entry_gets_a_row_per_level_up_to_its_near_entries_at_most_the_highest() {
        let entry = |near| Neighbour {
            id: 9,
            account_id: 4,
            at: DateTime::from_timestamp(86_400 * 3 + 5, 0).unwrap(),
            direction: "out".to_owned(),
            amount: 70,
            kind: "transfer".to_owned(),
            counterparty_account_id: 8,
            near,
        };
        assert!(levels_of(&entry(0)).unwrap().is_empty());
        let rows = levels_of(&entry(7)).unwrap();
        assert_eq!(rows.iter().map(|row| row.level).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!((rows[0].day, rows[0].direction, rows[0].entry_id), (3, DIRECTION_OUT, 9));
    }
}
