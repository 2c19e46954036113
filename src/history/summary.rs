//! Statement summaries (money in and out by kind, the top counterparties): the model, and the
//! PostgreSQL summary (the naive route, and the tuned route for small ranges). The tuned route's
//! ClickHouse summary from the daily totals is in [`super::aggregates`].

use std::collections::HashMap;

use sqlx::PgConnection;

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

/// What a summary's first statement tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryStart {
    /// The caller owns the account.
    pub owned: bool,
    /// The account has at most the `max` asked entries in the range (PostgreSQL sums them
    /// sooner than ClickHouse would).
    pub few: bool,
    /// Some entry (of any account) waits in the outbox: when none does, every committed entry
    /// is in ClickHouse, and the waiting entries need no read.
    pub any_waiting: bool,
}

/// Whether `user_id` owns the account, whether it has at most `max` entries in the range
/// (reading at most `max + 1` index entries), and whether anything waits in the outbox: one
/// statement.
pub async fn summary_start(
    conn: &mut PgConnection,
    user_id: UserId,
    account_id: AccountId,
    range: TimeRange,
    max: i64,
) -> anyhow::Result<SummaryStart> {
    let (from, to) = pg_bounds(range);
    let (owned, found, any_waiting): (bool, i64, bool) = sqlx::query_as(&format!(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $5),
                (SELECT count(*) FROM (
                     SELECT 1 FROM statement_entries WHERE account_id = $1 AND at >= $2 AND at < $3 LIMIT $4
                 ) probe),
                ({OLDEST_WAITING_AT}) IS NOT NULL"
    ))
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(max + 1)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(SummaryStart { owned, few: found <= max, any_waiting })
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
    let by_kind: Vec<PgTotals> = sqlx::query_as_with(
        &format!(
            "SELECT kind AS name,
                coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                count(*) AS count
         FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3 AND {filtered}
         GROUP BY kind
         ORDER BY kind COLLATE \"C\""
        ),
        selection(account_id, (from, to), filters)?,
    )
    .fetch_all(&mut *conn)
    .await?;
    // One row per counterparty account, however many names it was shown under (a display
    // name is the sender's choice: grouping by it would merge anyone calling themselves "bob"
    // with bob); system counterparties have no account and go by name.
    let top: Vec<CounterpartyTotals> = sqlx::query_as_with(
        &format!(
            "SELECT * FROM (
             SELECT counterparty_account_id AS account_id,
                    (array_agg(counterparty_name ORDER BY at DESC, id DESC))[1] AS name,
                    (array_agg(counterparty_user_name ORDER BY at DESC, id DESC)
                        FILTER (WHERE counterparty_user_name IS NOT NULL))[1] AS user_name,
                    coalesce(sum(amount) FILTER (WHERE direction = 'in'), 0)::bigint AS in_total,
                    coalesce(sum(amount) FILTER (WHERE direction = 'out'), 0)::bigint AS out_total,
                    count(*) AS count
             FROM statement_entries
             WHERE account_id = $1 AND at >= $2 AND at < $3 AND {filtered}
             GROUP BY counterparty_account_id, CASE WHEN counterparty_account_id IS NULL THEN counterparty_name END
         ) counterparties
         ORDER BY count DESC, name COLLATE \"C\", account_id NULLS LAST
         LIMIT $7"
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(TOP_COUNTERPARTIES_MAX)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Summary::from_parts(by_kind.into_iter().map(Totals::from).collect(), top))
}
