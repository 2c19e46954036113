//! Statement summaries (money in and out by kind, the top counterparties): the model, and the
//! PostgreSQL summary (the naive route, and the tuned route for small ranges). The tuned route's
//! ClickHouse summary from the daily totals is in [`super::aggregates`].

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::entry::{Filters, TimeRange};
use super::pg::{filtered, pg_bounds, selection, OLDEST_WAITING_AT};
use crate::domain::accounts::UserId;
use crate::domain::ids::AccountId;

/// Counterparties listed in a summary.
pub const TOP_COUNTERPARTIES_MAX: i64 = 10;
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
    pub(crate) fn from_parts(by_kind: Vec<Totals>, top_counterparties: Vec<CounterpartyTotals>) -> Self {
        let in_total = by_kind.iter().map(|kind| kind.in_total).sum();
        let out_total = by_kind.iter().map(|kind| kind.out_total).sum();
        Summary { in_total, out_total, by_kind, top_counterparties }
    }
}

/// Orders counterparties as the naive summary does (most entries first, then name in byte
/// order, then account, none last) and keeps the first [`TOP_COUNTERPARTIES_MAX`].
pub fn rank(top: &mut Vec<CounterpartyTotals>) {
    top.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
            .then_with(|| (a.account_id.is_none(), a.account_id).cmp(&(b.account_id.is_none(), b.account_id)))
    });
    top.truncate(TOP_COUNTERPARTIES_MAX as usize);
}

/// A summary from ClickHouse whose top counterparties may still lack their names.
#[derive(Debug)]
pub struct Unnamed {
    pub summary: Summary,
    /// When set, `summary.top_counterparties` holds every counterparty that can be among the
    /// top ones (more of them, unordered), those with an account without their names: what
    /// [`named`] completes from PostgreSQL.
    pub to_name: bool,
}

/// The summary with the latest names (in the range, of the entries the filters admit) of its
/// counterparties with an account, from PostgreSQL's index on (account, counterparty, time):
/// one index descent per counterparty, where ClickHouse would merge the names of every
/// counterparty of every day. Then ranked.
pub async fn named(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    unnamed: Unnamed,
) -> anyhow::Result<Summary> {
    let Unnamed { mut summary, to_name } = unnamed;
    if !to_name {
        return Ok(summary);
    }
    let ids: Vec<i64> = summary.top_counterparties.iter().filter_map(|cp| cp.account_id).collect();
    let names = latest_names(conn, account_id, range, filters, &ids).await?;
    for counterparty in &mut summary.top_counterparties {
        if let Some((name, user_name)) = counterparty.account_id.and_then(|id| names.get(&id)) {
            (counterparty.name, counterparty.user_name) = (name.clone(), user_name.clone());
        }
    }
    rank(&mut summary.top_counterparties);
    Ok(summary)
}

/// For each of `ids`, the counterparty name and the latest non-null user name of the
/// account's latest entry with it in the range that the filters admit.
async fn latest_names(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    ids: &[i64],
) -> anyhow::Result<HashMap<i64, (String, Option<String>)>> {
    let (from, to) = pg_bounds(range);
    let filtered = filtered(filters);
    let of_counterparty = format!(
        "FROM statement_entries
         WHERE account_id = $1 AND counterparty_account_id = c.id AND at >= $2 AND at < $3 AND {filtered}"
    );
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as_with(
        &format!(
            "SELECT c.id, latest.counterparty_name,
                    COALESCE(latest.counterparty_user_name,
                             (SELECT counterparty_user_name {of_counterparty} AND counterparty_user_name IS NOT NULL
                              ORDER BY at DESC, id DESC LIMIT 1))
             FROM unnest($7::int8[]) AS c(id)
             CROSS JOIN LATERAL (
                 SELECT counterparty_name, counterparty_user_name {of_counterparty}
                 ORDER BY at DESC, id DESC LIMIT 1
             ) latest"
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id, name, user_name)| (id, (name, user_name))).collect())
}

/// What a summary's first statement tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryStart {
    /// The caller owns the account.
    pub owned: bool,
    /// The summary, when the account has at most the `max` asked entries in the range
    /// (PostgreSQL sums them sooner than ClickHouse would) and the caller owns it.
    pub few: Option<Summary>,
    /// Some entry (of any account) waits in the outbox: when none does, every committed entry
    /// is in ClickHouse, and the waiting entries need no read.
    pub any_waiting: bool,
    /// When the oldest job run still in progress began, among those begun within a day: its
    /// entries carry that time ([`super::closed_days::closed_end`]).
    pub running_since: Option<DateTime<Utc>>,
}

/// Money in, money out and entries of a group of entries.
macro_rules! sums {
    () => {
        "coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                count(*) AS count"
    };
}

/// The totals by kind (`part` 1) of the entries of `$source`, as [`Totals`] rows of
/// [`SummaryRow`].
macro_rules! kinds_of {
    ($source:literal) => {
        concat!(
            "SELECT 1 AS part, kind AS name, NULL::int8 AS account_id, NULL::text AS user_name, ",
            sums!(),
            " FROM ",
            $source,
            " GROUP BY kind"
        )
    };
}

/// Every counterparty's totals (`part` 2) of the entries of `$source`: one row per
/// counterparty account, however many names it was shown under (a display name is the sender's
/// choice: grouping by it would merge anyone calling themselves "bob" with bob); system
/// counterparties have no account and go by name.
macro_rules! counterparties_of {
    ($source:literal) => {
        concat!(
            "SELECT 2 AS part, (array_agg(counterparty_name ORDER BY at DESC, id DESC))[1] AS name,
                counterparty_account_id AS account_id,
                (array_agg(counterparty_user_name ORDER BY at DESC, id DESC)
                    FILTER (WHERE counterparty_user_name IS NOT NULL))[1] AS user_name, ",
            sums!(),
            " FROM ",
            $source,
            " GROUP BY counterparty_account_id, CASE WHEN counterparty_account_id IS NULL THEN counterparty_name END"
        )
    };
}

/// The naive summary's order: kinds by name; counterparties by most entries, then name, then
/// account (none last).
const SUMMARY_ORDER: &str =
    "part, CASE WHEN part = 1 THEN name END COLLATE \"C\", count DESC, name COLLATE \"C\", account_id NULLS LAST";

/// A row of a summary read from PostgreSQL: a kind's totals (`part` 1) or a counterparty's (2).
#[derive(sqlx::FromRow)]
struct SummaryRow {
    part: i32,
    name: String,
    account_id: Option<i64>,
    user_name: Option<String>,
    in_total: i64,
    out_total: i64,
    count: i64,
}

/// The summary of [`SummaryRow`]s, the counterparties cut to [`TOP_COUNTERPARTIES_MAX`].
fn summary_of(rows: impl IntoIterator<Item = SummaryRow>) -> Summary {
    let (mut by_kind, mut top) = (Vec::new(), Vec::new());
    for row in rows {
        let SummaryRow { part, name, account_id, user_name, in_total, out_total, count } = row;
        match part {
            1 => by_kind.push(Totals { name, in_total, out_total, count }),
            _ => top.push(CounterpartyTotals { account_id, name, user_name, in_total, out_total, count }),
        }
    }
    top.truncate(TOP_COUNTERPARTIES_MAX as usize);
    Summary::from_parts(by_kind, top)
}

/// Whether `user_id` owns the account, whether anything waits in the outbox, since when a job
/// run is in progress at `now`, and, when the account has at most `max` entries in the range
/// (found reading at most `max + 1` index entries), its summary with `filters`: one statement.
pub async fn summary_start(
    conn: &mut PgConnection,
    (user_id, account_id): (UserId, AccountId),
    (range, filters): (TimeRange, &Filters),
    max: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<SummaryStart> {
    let (from, to) = pg_bounds(range);
    let filtered = filtered(filters);
    let sql = format!(
        "WITH start AS MATERIALIZED (
             SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $8) AS owned,
                    (SELECT count(*) FROM (
                         SELECT 1 FROM statement_entries WHERE account_id = $1 AND at >= $2 AND at < $3 LIMIT $7
                     ) probe) < $7 AS few,
                    ({OLDEST_WAITING_AT}) IS NOT NULL AS any_waiting,
                    (SELECT min(started_at) FROM job_runs
                      WHERE status = 'running' AND started_at > $9 - interval '1 day') AS running_since
         ), e AS MATERIALIZED (
             SELECT at, id, kind, direction, amount, counterparty_account_id, counterparty_name, counterparty_user_name
               FROM statement_entries
              WHERE account_id = $1 AND at >= $2 AND at < $3 AND {filtered} AND (SELECT owned AND few FROM start)
         ), summed AS (
             {} UNION ALL {}
         )
         SELECT start.owned, start.few, start.any_waiting, start.running_since, summed.*
           FROM start LEFT JOIN summed ON true
          ORDER BY {SUMMARY_ORDER}",
        kinds_of!("e"),
        counterparties_of!("e"),
    );
    let rows: Vec<PgRow> = sqlx::query_with(&sql, selection(account_id, (from, to), filters)?)
        .bind(max + 1)
        .bind(user_id)
        .bind(now)
        .fetch_all(conn)
        .await?;
    let first = rows.first().context("a summary's start reads a row")?;
    let (owned, few): (bool, bool) = (first.try_get("owned")?, first.try_get("few")?);
    let (any_waiting, running_since) = (first.try_get("any_waiting")?, first.try_get("running_since")?);
    // Without a kind or counterparty (not owned, too many, or none in the range), the one row
    // of the start has no part.
    let summed = rows.iter().filter(|row| matches!(row.try_get::<Option<i32>, _>("part"), Ok(Some(_))));
    let summed: Vec<SummaryRow> = summed.map(SummaryRow::from_row).collect::<Result<_, _>>()?;
    let few = (owned && few).then(|| summary_of(summed));
    Ok(SummaryStart { owned, few, any_waiting, running_since })
}

/// Prepares [`summary_start`] on a new pooled connection and opens what it reads (a year of
/// `statement_entries`' partitions and their indexes), for an account that does not exist.
/// Left to a connection's first summary, that cost the request about 5 ms; and since a pool's
/// idle connections take turns, one summary in a few dozen paid it at the start of a load.
pub fn warm(conn: &mut PgConnection) -> crate::store::WarmFuture<'_> {
    Box::pin(async move {
        let now = Utc::now();
        let range = TimeRange { from: Some(now - chrono::Duration::days(366)), to: Some(now) };
        let nobody = (UserId::new(0), AccountId::new(0));
        summary_start(conn, nobody, (range, &Filters::default()), 1, now).await.map(drop)
    })
}

/// The summary computed by PostgreSQL over the entries that pass `filters`.
pub async fn naive_summary(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
) -> anyhow::Result<Summary> {
    let (from, to) = pg_bounds(range);
    let filtered = filtered(filters);
    let source = format!("statement_entries WHERE account_id = $1 AND at >= $2 AND at < $3 AND {filtered}");
    let kinds = kinds_of!("{source}").replace("{source}", &source);
    let counterparties = counterparties_of!("{source}").replace("{source}", &source);
    let by_kind: Vec<SummaryRow> = sqlx::query_as_with(
        &format!("{kinds} ORDER BY kind COLLATE \"C\""),
        selection(account_id, (from, to), filters)?,
    )
    .fetch_all(&mut *conn)
    .await?;
    let top: Vec<SummaryRow> = sqlx::query_as_with(
        &format!("SELECT * FROM ({counterparties}) counterparties ORDER BY {SUMMARY_ORDER} LIMIT $7"),
        selection(account_id, (from, to), filters)?,
    )
    .bind(TOP_COUNTERPARTIES_MAX)
    .fetch_all(&mut *conn)
    .await?;
    Ok(summary_of(by_kind.into_iter().chain(top)))
}
