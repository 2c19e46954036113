//! The agreement of the two statement stores, as the audit checks it: per UTC day over the
//! last year, PostgreSQL's entries against ClickHouse's entries and daily totals.
//!
//! Every entry that has left the outbox is in ClickHouse, and ClickHouse holds only entries
//! PostgreSQL has, so for each day: PostgreSQL's entries minus those still in the outbox ≤
//! ClickHouse's distinct entries ≤ PostgreSQL's entries, and the same for the entries counted
//! by `daily_totals` (which counts every inserted row: a doubled entry shows there). On a day
//! with nothing waiting, the amounts must be equal too.
//!
//! The check grows with new entries, not with the year: PostgreSQL counts a closed day once
//! (`statement_day_counts`) and then only the open days and the outbox (small); ClickHouse
//! counts rows per day (`count()` reads one small column) and sums its daily totals. Only a day
//! whose rows and totals differ (copies not yet collapsed, or a row lost) is counted exactly,
//! with `uniqExact(entry_id)`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use sqlx::PgPool;

use super::clickhouse::ClickHouse;

/// Statements are kept for this long in both stores; older days may already be gone from one
/// and not yet from the other (retention drops whole months, TTL works row by row and lazily,
/// on the ClickHouse server's own clock), so they are not compared.
const COMPARED_MONTHS: u32 = 12;
/// A day is closed (counted once and kept) when it ended this long ago: no transaction that
/// writes into it is still running by then.
const CLOSED_AFTER: chrono::Duration = chrono::Duration::hours(1);
/// The ClickHouse queries give up after this long (the check then fails).
const CLICKHOUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// PostgreSQL's entries of one UTC day: all of them, and those still waiting in the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgDay {
    pub entries: i64,
    pub amount: i64,
    pub waiting: i64,
    pub waiting_amount: i64,
}

/// ClickHouse's view of one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChDay {
    /// Rows of `statement_entries` (copies of a replayed entry included, until merged).
    pub rows: u64,
    /// Distinct entries, when counted exactly; otherwise `rows`.
    pub distinct: u64,
    /// Entries and amount counted by `daily_totals`.
    pub totals: u64,
    pub totals_amount: i64,
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Counts the closed days from `from` on that `statement_day_counts` lacks, up to `open_from`.
async fn count_closed_days(pool: &PgPool, since: NaiveDate, open_from: NaiveDate) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM statement_day_counts WHERE day < $1").bind(since).execute(pool).await?;
    let last: Option<NaiveDate> =
        sqlx::query_scalar("SELECT max(day) FROM statement_day_counts").fetch_one(pool).await?;
    let from = last.and_then(|last| last.checked_add_days(Days::new(1))).map_or(since, |next| next.max(since));
    if from >= open_from {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO statement_day_counts (day, entries, amount)
         SELECT d::date, COALESCE(c.entries, 0), COALESCE(c.amount, 0)
           FROM generate_series($1::date, $2::date - 1, interval '1 day') d
           LEFT JOIN (SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) AS entries, sum(amount)::int8 AS amount
                        FROM statement_entries WHERE at >= $3 AND at < $4 GROUP BY 1) c ON c.day = d::date
         ON CONFLICT (day) DO NOTHING",
    )
    .bind(from)
    .bind(open_from)
    .bind(midnight(from))
    .bind(midnight(open_from))
    .execute(pool)
    .await?;
    Ok(())
}

/// PostgreSQL's days from `since` on, in one snapshot: closed days as counted before, open
/// days (from `open_from`) counted now, and what waits in the outbox per day.
async fn postgres_days(
    pool: &PgPool,
    since: NaiveDate,
    open_from: NaiveDate,
) -> sqlx::Result<BTreeMap<NaiveDate, PgDay>> {
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let mut totals: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT day, entries, amount FROM statement_day_counts WHERE day >= $1 AND day < $2 AND entries > 0",
    )
    .bind(since)
    .bind(open_from)
    .fetch_all(&mut *tx)
    .await?;
    totals.extend(
        sqlx::query_as::<_, (NaiveDate, i64, i64)>(
            "SELECT (at AT TIME ZONE 'UTC')::date, count(*), COALESCE(sum(amount), 0)::int8
               FROM statement_entries WHERE at >= $1 GROUP BY 1",
        )
        .bind(midnight(open_from))
        .fetch_all(&mut *tx)
        .await?,
    );
    let waiting: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT (e.at AT TIME ZONE 'UTC')::date, count(*), COALESCE(sum(e.amount), 0)::int8
           FROM statement_outbox o
           CROSS JOIN LATERAL unnest(o.entry_ids) AS w(entry_id)
           JOIN statement_entries e ON e.id = w.entry_id AND e.at = o.at
          WHERE o.at >= $1
          GROUP BY 1",
    )
    .bind(midnight(since))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut days: BTreeMap<NaiveDate, PgDay> = BTreeMap::new();
    for (day, entries, amount) in totals {
        let entry = days.entry(day).or_default();
        entry.entries += entries;
        entry.amount += amount;
    }
    for (day, entries, amount) in waiting {
        let entry = days.entry(day).or_default();
        entry.waiting += entries;
        entry.waiting_amount += amount;
    }
    Ok(days)
}

/// Counts one closed day again and corrects its kept count if it differs (an entry written
/// into a day after it was counted: the benchmark seed, a test). Returns the day as counted.
async fn recount_day(pool: &PgPool, day: NaiveDate) -> sqlx::Result<(i64, i64)> {
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    let (entries, amount): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(amount), 0)::int8 FROM statement_entries WHERE at >= $1 AND at < $2",
    )
    .bind(midnight(day))
    .bind(midnight(next))
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO statement_day_counts (day, entries, amount) VALUES ($1, $2, $3)
         ON CONFLICT (day) DO UPDATE SET entries = EXCLUDED.entries, amount = EXCLUDED.amount",
    )
    .bind(day)
    .bind(entries)
    .bind(amount)
    .execute(pool)
    .await?;
    Ok((entries, amount))
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct ChDayRow {
    day: u16,
    entries: u64,
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct ChTotalsRow {
    day: u16,
    entries: u64,
    amount: i64,
}

fn day_of(days_since_epoch: u16) -> NaiveDate {
    NaiveDate::default().checked_add_days(Days::new(u64::from(days_since_epoch))).unwrap_or_default()
}

async fn with_timeout<T>(query: impl std::future::Future<Output = clickhouse::error::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(CLICKHOUSE_TIMEOUT, query)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", CLICKHOUSE_TIMEOUT.as_secs()))?
        .map_err(anyhow::Error::from)
}

/// ClickHouse's days from `since` on, summed over the shards of a cluster: an entry belongs to
/// one shard (its account's), so the shards' counts add up, and an entry stored on two shards
/// counts twice, as a doubled entry should.
async fn clickhouse_days(clickhouse: &ClickHouse, since: NaiveDate) -> anyhow::Result<BTreeMap<NaiveDate, ChDay>> {
    let mut days: BTreeMap<NaiveDate, ChDay> = BTreeMap::new();
    for (index, shard) in clickhouse.shards().iter().enumerate() {
        let shard_days = server_days(shard, since).await.with_context(|| format!("shard {}", index + 1))?;
        for (day, counts) in shard_days {
            let sum = days.entry(day).or_default();
            sum.rows += counts.rows;
            sum.distinct += counts.distinct;
            sum.totals += counts.totals;
            sum.totals_amount += counts.totals_amount;
        }
    }
    Ok(days)
}

/// One server's days from `since` on: rows of `statement_entries` and the daily totals; days
/// where they differ are counted exactly.
async fn server_days(clickhouse: &ClickHouse, since: NaiveDate) -> anyhow::Result<BTreeMap<NaiveDate, ChDay>> {
    let seconds = u32::try_from(midnight(since).timestamp().max(0)).unwrap_or(u32::MAX);
    let rows = clickhouse
        .query(
            "SELECT toDate(at) AS day, count() AS entries
             FROM statement_entries
             WHERE at >= toDateTime(?)
             GROUP BY day",
        )
        .bind(seconds)
        .fetch_all::<ChDayRow>();
    let totals = clickhouse
        .query(
            "SELECT day, sum(entries) AS entries, sum(amount) AS amount
             FROM daily_totals
             WHERE day >= toDate(toDateTime(?))
             GROUP BY day",
        )
        .bind(seconds)
        .fetch_all::<ChTotalsRow>();
    let (rows, totals) = tokio::try_join!(with_timeout(rows), with_timeout(totals))?;
    let mut days: BTreeMap<NaiveDate, ChDay> = BTreeMap::new();
    for row in rows {
        let day = days.entry(day_of(row.day)).or_default();
        (day.rows, day.distinct) = (row.entries, row.entries);
    }
    for row in totals {
        let day = days.entry(day_of(row.day)).or_default();
        (day.totals, day.totals_amount) = (row.entries, row.amount);
    }
    for (day, counts) in days.iter_mut().filter(|(_, counts)| counts.rows != counts.totals) {
        counts.distinct = distinct_entries(clickhouse, *day).await?;
    }
    Ok(days)
}

/// The distinct entries of one day in `statement_entries`.
async fn distinct_entries(clickhouse: &ClickHouse, day: NaiveDate) -> anyhow::Result<u64> {
    let from = u32::try_from(midnight(day).timestamp().max(0)).unwrap_or(u32::MAX);
    let query = clickhouse
        .query("SELECT uniqExact(entry_id) FROM statement_entries WHERE at >= toDateTime(?) AND at < toDateTime(?)")
        .bind(from)
        .bind(from.saturating_add(86_400))
        .fetch_one::<u64>();
    with_timeout(query).await
}

/// What is wrong with one day, if anything: PostgreSQL's entries forwarded before ClickHouse
/// was read (`before`) and all of them after it (`after`) against ClickHouse's.
pub fn judge_day(before: PgDay, after: PgDay, ch: ChDay) -> Option<String> {
    let forwarded = before.entries - before.waiting;
    let all = after.entries;
    let mut wrong = Vec::new();
    let counts = |found: u64| format!("ClickHouse {found}, PostgreSQL {all} of which {forwarded} forwarded");
    if (ch.distinct as i64) < forwarded {
        wrong.push(format!("entries lost: {}", counts(ch.distinct)));
    }
    if ch.distinct as i64 > all {
        wrong.push(format!("entries PostgreSQL does not have: {}", counts(ch.distinct)));
    }
    if ch.totals as i64 > all {
        wrong.push(format!("daily totals count entries twice or unknown: {}", counts(ch.totals)));
    } else if (ch.totals as i64) < forwarded {
        wrong.push(format!("daily totals miss entries: {}", counts(ch.totals)));
    } else if before.waiting == 0 && after.waiting == 0 && ch.totals_amount != after.amount {
        wrong.push(format!("daily totals amount {}, PostgreSQL {}", ch.totals_amount, after.amount));
    }
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// The verdict of [`stores_agree`]: the audit reports it as its `clickhouse-entries-match-postgres`
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub ok: bool,
    pub detail: String,
}

/// The check: PostgreSQL, then ClickHouse, then PostgreSQL again (the lower bounds from the
/// first count, the upper from the second, so that the forwarder moving rows meanwhile cannot
/// fail it). A ClickHouse that cannot be read fails it: an audit never passes unchecked.
pub async fn stores_agree(pool: &PgPool, clickhouse: &ClickHouse, now: DateTime<Utc>) -> Agreement {
    let latest = now.max(Utc::now());
    let oldest = latest.checked_sub_months(Months::new(COMPARED_MONTHS)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let since = oldest.date_naive().checked_add_days(Days::new(1)).unwrap_or(oldest.date_naive());
    let open_from = (latest - CLOSED_AFTER).date_naive().max(since);
    let fail = |detail: String| Agreement { ok: false, detail };
    let pg_failed = |error: sqlx::Error| fail(format!("PostgreSQL statement entries not counted: {error}"));
    if let Err(error) = count_closed_days(pool, since, open_from).await {
        return pg_failed(error);
    }
    let before = match postgres_days(pool, since, open_from).await {
        Ok(days) => days,
        Err(error) => return pg_failed(error),
    };
    let stored = match clickhouse_days(clickhouse, since).await {
        Ok(days) => days,
        Err(error) => {
            return fail(format!(
                "ClickHouse unreachable or failing, PostgreSQL and ClickHouse not compared: {}",
                format!("{error:#}").split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        }
    };
    let mut after = match postgres_days(pool, since, open_from).await {
        Ok(days) => days,
        Err(error) => return pg_failed(error),
    };
    match compare(pool, before, &mut after, &stored, open_from).await {
        Ok(check) => check,
        Err(error) => pg_failed(error),
    }
}

/// Compares day by day; a closed day that disagrees is counted again in PostgreSQL first
/// (its kept count may predate an entry written into the past) and judged again.
async fn compare(
    pool: &PgPool,
    mut before: BTreeMap<NaiveDate, PgDay>,
    after: &mut BTreeMap<NaiveDate, PgDay>,
    stored: &BTreeMap<NaiveDate, ChDay>,
    open_from: NaiveDate,
) -> sqlx::Result<Agreement> {
    let days: BTreeSet<NaiveDate> = before.keys().chain(stored.keys()).chain(after.keys()).copied().collect();
    let (mut total, mut waiting, mut in_clickhouse) = (0i64, 0i64, 0u64);
    let mut wrong = Vec::new();
    for day in days {
        let ch = stored.get(&day).copied().unwrap_or_default();
        let mut judged =
            judge_day(before.get(&day).copied().unwrap_or_default(), after.get(&day).copied().unwrap_or_default(), ch);
        if judged.is_some() && day < open_from {
            let (entries, amount) = recount_day(pool, day).await?;
            for days in [&mut before, &mut *after] {
                let counted = days.entry(day).or_default();
                (counted.entries, counted.amount) = (entries, amount);
            }
            judged = judge_day(before[&day], after[&day], ch);
        }
        let now_in_postgres = after.get(&day).copied().unwrap_or_default();
        total += now_in_postgres.entries;
        waiting += now_in_postgres.waiting;
        in_clickhouse += ch.distinct;
        if let Some(problem) = judged {
            wrong.push(format!("{day}: {problem}"));
        }
    }
    let since = stored.keys().chain(after.keys()).min().map_or_else(String::new, |day| format!(" since {day}"));
    Ok(if wrong.is_empty() {
        Agreement {
            ok: true,
            detail: format!(
                "entries{since}: PostgreSQL {total} ({waiting} waiting in the outbox), ClickHouse {in_clickhouse} distinct"
            ),
        }
    } else {
        Agreement {
            ok: false,
            detail: format!("days where ClickHouse does not match PostgreSQL: {}", wrong.join("; ")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_disagreement_is_named() {
        let pg = PgDay { entries: 10, amount: 1_000, waiting: 0, waiting_amount: 0 };
        let fine = ChDay { rows: 10, distinct: 10, totals: 10, totals_amount: 1_000 };
        assert_eq!(judge_day(pg, pg, fine), None);
        let lost = judge_day(pg, pg, ChDay { rows: 9, distinct: 9, ..fine }).unwrap();
        assert!(lost.contains("entries lost"), "{lost}");
        let doubled = judge_day(pg, pg, ChDay { rows: 11, totals: 11, totals_amount: 1_100, ..fine }).unwrap();
        assert!(doubled.contains("twice"), "{doubled}");
        let amount = judge_day(pg, pg, ChDay { totals_amount: 999, ..fine }).unwrap();
        assert!(amount.contains("amount 999"), "{amount}");
        // Waiting entries may or may not be in ClickHouse yet; the amounts are not compared then.
        let waiting = PgDay { waiting: 2, waiting_amount: 200, ..pg };
        assert_eq!(judge_day(waiting, waiting, ChDay { rows: 8, distinct: 8, totals: 8, totals_amount: 800 }), None);
    }
}
