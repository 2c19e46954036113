//! Statement pages from PostgreSQL: the naive `OFFSET` page with its count, what a first
//! version would do, and the keyset page over `statement_entries_account_at` (account, time,
//! id), which costs a few index entries at any depth. Filters are plain conditions on the
//! account's entries (a counterparty has its own index), so a keyset page with a rare
//! direction or kind may read far into the account: the tuned route bounds that read
//! ([`bounded_keyset_page`]) and asks ClickHouse when it is not enough.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, PgConnection, Row};

use super::entry::{
    direction_name, page_of, Cursor, Filters, HistoryEntry, Page, PgEntry, TimeRange, PG_ENTRY_COLUMNS,
    PG_TOTALS_COLUMNS,
};
use crate::domain::ids::{AccountId, UserId};

/// Bounds for PostgreSQL, where an open end becomes a far date (so partitions still prune).
pub(crate) fn pg_bounds(range: TimeRange) -> (DateTime<Utc>, DateTime<Utc>) {
    let far_past = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let far_future = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).single().unwrap_or_default();
    (range.from.unwrap_or(far_past), range.to.unwrap_or(far_future))
}

/// The arguments `$1`..`$6` every statement-entry query of an account shares: the account, the
/// range (`$2`, `$3`) and the filters as [`filtered`] names them (`$4`..`$6`). Further binds
/// follow from `$7`.
pub(crate) fn selection(
    account_id: AccountId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    filters: &Filters,
) -> anyhow::Result<PgArguments> {
    let mut args = PgArguments::default();
    let failed = |error: sqlx::error::BoxDynError| anyhow::anyhow!(error);
    args.add(account_id).map_err(failed)?;
    args.add(from).map_err(failed)?;
    args.add(to).map_err(failed)?;
    args.add(filters.direction).map_err(failed)?;
    args.add(filters.kind).map_err(failed)?;
    args.add(filters.counterparty_account_id).map_err(failed)?;
    Ok(args)
}

/// The filters as conditions on `$4` (direction), `$5` (kind), `$6` (counterparty), each bound
/// whether given or not (NULL): a filter given is a plain equality, which a generic plan can
/// still match with an index (`statement_entries_account_counterparty`).
pub(crate) fn filtered(filters: &Filters) -> String {
    let condition = |given: bool, column: &str, param: &str, cast: &str| {
        if given {
            format!("{column} = {param}")
        } else {
            format!("{param}::{cast} IS NULL")
        }
    };
    [
        condition(filters.direction.is_some(), "direction", "$4", "text"),
        condition(filters.kind.is_some(), "kind", "$5", "text"),
        condition(filters.counterparty_account_id.is_some(), "counterparty_account_id", "$6", "bigint"),
    ]
    .join(" AND ")
}

/// Where the page starts: just after the cursor, or at the range's end.
fn keyset_start(cursor: Option<Cursor>, to: DateTime<Utc>) -> anyhow::Result<(DateTime<Utc>, i64)> {
    match cursor {
        Some(cursor) => Ok((
            DateTime::from_timestamp_micros(cursor.at_us).ok_or_else(|| anyhow::anyhow!("cursor time out of range"))?,
            cursor.id,
        )),
        None => Ok((to, i64::MAX)),
    }
}

fn entries_of(rows: Vec<PgEntry>) -> anyhow::Result<Vec<HistoryEntry>> {
    rows.into_iter().map(HistoryEntry::try_from).collect()
}

/// One OFFSET page, newest first, and the number of entries in the range that pass `filters`.
pub async fn naive_page(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    page: i64,
    limit: i64,
) -> anyhow::Result<(Vec<HistoryEntry>, i64)> {
    let (from, to) = pg_bounds(range);
    let rows: Vec<PgEntry> = sqlx::query_as_with(
        &format!(
            "SELECT {PG_ENTRY_COLUMNS} FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3 AND {}
         ORDER BY at DESC, id DESC OFFSET $7 LIMIT $8",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(page.saturating_mul(limit))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar_with(
        &format!(
            "SELECT count(*) FROM statement_entries WHERE account_id = $1 AND at >= $2 AND at < $3 AND {}",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((entries_of(rows)?, total))
}

/// The tuned keyset page, answered by PostgreSQL however far it has to read.
pub async fn keyset_page(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    cursor: Option<Cursor>,
    limit: i64,
) -> anyhow::Result<Page> {
    let (from, to) = pg_bounds(range);
    let (before_at, before_id) = keyset_start(cursor, to)?;
    let rows: Vec<PgEntry> = sqlx::query_as_with(
        &format!(
            "SELECT {PG_ENTRY_COLUMNS} FROM statement_entries
         WHERE account_id = $1 AND at >= $2 AND at < $3 AND {} AND (at, id) < ($7, $8)
         ORDER BY at DESC, id DESC LIMIT $9",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(page_of(entries_of(rows)?, limit))
}

/// The keyset page if PostgreSQL finds it among the next `scan_max` entries of the account
/// (or those are all there are); `None` when a rare filter would need a longer read. Without
/// filters every entry read is on the page, and a counterparty has its own index: then this
/// is [`keyset_page`].
pub async fn bounded_keyset_page(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    cursor: Option<Cursor>,
    limit: i64,
    scan_max: i64,
) -> anyhow::Result<Option<Page>> {
    if filters.is_empty() || filters.counterparty_account_id.is_some() {
        return keyset_page(conn, account_id, range, filters, cursor, limit).await.map(Some);
    }
    let (from, to) = pg_bounds(range);
    let (before_at, before_id) = keyset_start(cursor, to)?;
    let rows: Vec<PgEntry> = sqlx::query_as_with(
        &format!(
            "SELECT {PG_ENTRY_COLUMNS} FROM (
             SELECT {PG_ENTRY_COLUMNS} FROM statement_entries
             WHERE account_id = $1 AND at >= $2 AND at < $3 AND (at, id) < ($7, $8)
             ORDER BY at DESC, id DESC LIMIT $10
         ) scanned
         WHERE {}
         ORDER BY at DESC, id DESC LIMIT $9",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    .bind(scan_max)
    .fetch_all(&mut *conn)
    .await?;
    if rows.len() as i64 > limit {
        return Ok(Some(page_of(entries_of(rows)?, limit)));
    }
    // Short: complete only if the read reached the account's (or the range's) end.
    let scanned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT 1 FROM statement_entries
             WHERE account_id = $1 AND at >= $2 AND at < $3 AND (at, id) < ($4, $5)
             ORDER BY at DESC, id DESC LIMIT $6
         ) scanned",
    )
    .bind(account_id)
    .bind(from)
    .bind(to)
    .bind(before_at)
    .bind(before_id)
    .bind(scan_max)
    .fetch_one(&mut *conn)
    .await?;
    (scanned < scan_max).then(|| entries_of(rows).map(|entries| page_of(entries, limit))).transpose()
}

/// The account's entries of a keyset page that are still waiting in the outbox (not yet, or
/// not yet known to be, in ClickHouse), newest first, at most `limit + 1`: what a ClickHouse
/// page adds so that it shows every committed entry.
pub async fn waiting_entries(
    conn: &mut PgConnection,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    cursor: Option<Cursor>,
    limit: i64,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let (from, to) = pg_bounds(range);
    let (before_at, before_id) = keyset_start(cursor, to)?;
    let rows: Vec<PgEntry> = sqlx::query_as_with(
        &format!(
            "SELECT {PG_ENTRY_COLUMNS} FROM (
             SELECT e.* FROM statement_outbox o
             CROSS JOIN LATERAL unnest(o.entry_ids) AS waiting(entry_id)
             JOIN statement_entries e ON e.id = waiting.entry_id AND e.at = o.at
             WHERE e.account_id = $1 AND e.at >= $2 AND e.at < $3 AND (e.at, e.id) < ($7, $8)
         ) waiting
         WHERE {}
         ORDER BY at DESC, id DESC LIMIT $9",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    // Planned for its values each time: a generic plan reads the account's entries first
    // (hundreds of thousands on a busy account, 650 ms) instead of the few waiting ones.
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    entries_of(rows)
}

/// The account's entries in the two windows `[low, high)` (microseconds) of `windows`, within
/// `range`, that the filters admit, in no order: None when there are more than `max` (a
/// summary then reads them from ClickHouse). What a summary adds to the whole days of the
/// daily totals; it includes the entries still waiting in the outbox of those windows. With
/// `totals_only`, only the fields a summary's totals need ([`PG_TOTALS_COLUMNS`]).
pub async fn entries_within(
    conn: &mut PgConnection,
    account_id: AccountId,
    (range, filters): (TimeRange, &Filters),
    (windows, totals_only): ([(i64, i64); 2], bool),
    max: i64,
) -> anyhow::Result<Option<Vec<HistoryEntry>>> {
    let at = |us: i64| DateTime::from_timestamp_micros(us).ok_or_else(|| anyhow::anyhow!("time out of range"));
    let (from, to) = pg_bounds(range);
    // Each window within the range, bound as it is: one index range per window, and a plan
    // that serves every window (its partitions pruned as it starts), made once per connection.
    let within = |(low, high): (i64, i64)| -> anyhow::Result<_> { Ok((at(low)?.max(from), at(high)?.min(to))) };
    let ((low_0, high_0), (low_1, high_1)) = (within(windows[0])?, within(windows[1])?);
    let columns = if totals_only { PG_TOTALS_COLUMNS } else { PG_ENTRY_COLUMNS };
    let filtered = filtered(filters);
    let rows: Vec<PgEntry> = sqlx::query_as_with(
        &format!(
            "SELECT {columns} FROM statement_entries
             WHERE account_id = $1 AND at >= $7 AND at < $8 AND {filtered}
             UNION ALL
             SELECT {columns} FROM statement_entries
             WHERE account_id = $1 AND at >= $9 AND at < $10 AND {filtered}
             LIMIT $11"
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(low_0)
    .bind(high_0)
    .bind(low_1)
    .bind(high_1)
    .bind(max + 1)
    .fetch_all(&mut *conn)
    .await?;
    if rows.len() as i64 > max {
        return Ok(None);
    }
    entries_of(rows).map(Some)
}

/// The time of the oldest entry waiting in the outbox (no row when none waits). The lowest id
/// is (nearly) the oldest row, and its look-up walks the primary key instead of scanning a
/// backlog.
pub const OLDEST_WAITING_AT: &str = "SELECT at FROM statement_outbox ORDER BY id LIMIT 1";

/// How far the read store is behind, from the time [`OLDEST_WAITING_AT`] read: at least 1 ms
/// while anything waits, 0 when nothing does (`forwarder::lag_ms`).
pub fn lag_since(oldest_waiting: Option<DateTime<Utc>>, now: DateTime<Utc>) -> i64 {
    oldest_waiting.map_or(0, |oldest| (now - oldest).num_milliseconds().max(1))
}

/// What the tuned route learns from PostgreSQL in one statement, one round trip and one
/// snapshot: whether the caller owns the account, the time of the oldest entry waiting in the
/// outbox (the read store's lag), and, when asked for, the keyset page.
pub struct OwnedPage {
    pub owned: bool,
    pub oldest_waiting: Option<DateTime<Utc>>,
    /// The page's rows, newest first, at most `limit + 1` (the extra one says there is more),
    /// for [`entry_row`]; `None` when not read, or when the caller does not own the account.
    pub rows: Option<Vec<PgRow>>,
}

/// Whether `user_id` owns the account, and the time of the oldest entry waiting in the outbox,
/// found as `forwarder::lag_ms` finds it ([`OLDEST_WAITING_AT`]): one statement.
pub async fn owner_and_oldest_waiting(
    conn: &mut PgConnection,
    user_id: UserId,
    account_id: AccountId,
) -> anyhow::Result<OwnedPage> {
    let (owned, oldest_waiting): (bool, Option<DateTime<Utc>>) = sqlx::query_as(&format!(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $2), ({OLDEST_WAITING_AT})"
    ))
    .bind(account_id)
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(OwnedPage { owned, oldest_waiting, rows: None })
}

/// The keyset page of [`keyset_page`], read only if `user_id` owns the account, with what
/// [`owner_and_oldest_waiting`] tells: the tuned route's three reads in one statement. The
/// rows are left undecoded: the route writes them out as they are ([`entry_row`]).
#[allow(clippy::too_many_arguments)]
pub async fn owned_keyset_page(
    conn: &mut PgConnection,
    user_id: UserId,
    account_id: AccountId,
    range: TimeRange,
    filters: &Filters,
    cursor: Option<Cursor>,
    limit: i64,
) -> anyhow::Result<OwnedPage> {
    let (from, to) = pg_bounds(range);
    let (before_at, before_id) = keyset_start(cursor, to)?;
    let mut rows = sqlx::query_with(
        &format!(
            "SELECT o.owned, w.oldest, e.* FROM
             (SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $10) AS owned) o
             CROSS JOIN (SELECT ({OLDEST_WAITING_AT}) AS oldest) w
             LEFT JOIN LATERAL (
                 SELECT {ENTRY_ROW_COLUMNS} FROM statement_entries
                 WHERE o.owned AND account_id = $1 AND at >= $2 AND at < $3 AND {} AND (at, id) < ($7, $8)
                 ORDER BY at DESC, id DESC LIMIT $9
             ) e ON true
             ORDER BY e.at DESC, e.id DESC",
            filtered(filters)
        ),
        selection(account_id, (from, to), filters)?,
    )
    .bind(before_at)
    .bind(before_id)
    .bind(limit + 1)
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    let first = rows.first().ok_or_else(|| anyhow::anyhow!("the page read returned no row"))?;
    let (owned, oldest_waiting): (bool, Option<DateTime<Utc>>) = (first.try_get(0)?, first.try_get(1)?);
    if !owned {
        return Ok(OwnedPage { owned, oldest_waiting, rows: None });
    }
    // An empty page is the outer join's one row of NULLs.
    if rows.len() == 1 && first.try_get::<Option<i64>, _>(2)?.is_none() {
        rows.clear();
    }
    Ok(OwnedPage { owned, oldest_waiting, rows: Some(rows) })
}

/// The entry columns of [`owned_keyset_page`], from its third column on (the account is the
/// one asked for).
const ENTRY_ROW_COLUMNS: &str = "id, at, direction, amount, balance_after, kind, counterparty_account_id,
     counterparty_name, transfer_id, memo, counterparty_user_name";

/// A statement entry borrowed from a row of [`owned_keyset_page`]: what [`HistoryEntry`]
/// holds, without copying its texts.
pub struct EntryRow<'r> {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub direction: &'static str,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: &'r str,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: &'r str,
    pub transfer_id: Option<i64>,
    /// An empty memo is no memo, as in [`HistoryEntry`].
    pub memo: Option<&'r str>,
    pub counterparty_user_name: Option<&'r str>,
}

/// The entry of a row of [`owned_keyset_page`], by column position.
pub fn entry_row(row: &PgRow) -> anyhow::Result<EntryRow<'_>> {
    Ok(EntryRow {
        id: row.try_get(2)?,
        at: row.try_get(3)?,
        direction: direction_name(row.try_get(4)?)?,
        amount: row.try_get(5)?,
        balance_after: row.try_get(6)?,
        kind: row.try_get(7)?,
        counterparty_account_id: row.try_get(8)?,
        counterparty_name: row.try_get(9)?,
        transfer_id: row.try_get(10)?,
        memo: row.try_get::<Option<&str>, _>(11)?.filter(|memo| !memo.is_empty()),
        counterparty_user_name: row.try_get(12)?,
    })
}
