//! Statement history of one account: tuned (keyset cursor, from the PostgreSQL keyset index
//! or, for a rare filter on a busy account, ClickHouse plus the entries not yet forwarded) and
//! naive (PostgreSQL, OFFSET) routes with the same entries.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::paging::page_size;
use super::schemas;
use crate::domain::ids::AccountId;
use crate::history::clickhouse::ClickHouse;
use crate::history::closed_days::{self, ClosedRead};
use crate::history::entry::{
    merge_pages, micros, next_cursor as next_cursor_of, Cursor, Filters, HistoryEntry, Page, TimeRange,
};
use crate::history::forwarder::lag_ms;
use crate::history::pg::lag_since;
use crate::history::summary::{self, Summary, Totals};
use crate::history::{aggregates, ch, pg};
use crate::http::state::AppState;
use crate::store::accounts;

pub const LAG_HEADER: &str = "x-history-lag-ms";
pub const SOURCE_HEADER: &str = "x-history-source";
/// Entries of the account a filtered tuned page may read in PostgreSQL before it asks
/// ClickHouse instead (a rare filter on a busy account): a few milliseconds of index and heap.
const PG_SCAN_MAX: i64 = 2_000;
/// A summary over at most this many entries (whatever the filters) is computed by PostgreSQL:
/// sooner than ClickHouse's floor of a few milliseconds per query.
const SUMMARY_PG_MAX: i64 = 1_000;
/// The most entries of a summary's partial days read from PostgreSQL; more (a day with a
/// burst), and ClickHouse reads them.
const SUMMARY_EDGES_PG_MAX: i64 = 5_000;
/// Deepest naive page: OFFSET work grows with it.
const NAIVE_PAGE_MAX: i64 = 100_000;

#[derive(Serialize, ToSchema, Debug)]
#[schema(example = json!({"account_id": 1057, "name": "jun", "user_name": "jun"}))]
pub struct Counterparty {
    /// The other account; null for top-ups.
    pub account_id: Option<i64>,
    /// The name shown (for top-ups `external`). For money received, the display name the
    /// sender chose, if any: anything the sender liked, even another user's name.
    pub name: String,
    /// The other account's real user name when the entry was written, always beside `name`;
    /// null for system counterparties (top-ups, interest) and for entries written before it
    /// was recorded.
    pub user_name: Option<String>,
}

#[derive(Serialize, ToSchema, Debug)]
#[schema(example = json!({"id": 5012, "at": "2026-11-24T04:00:00Z", "account_id": 1042, "direction": "out", "amount": 25000,
        "balance_after": 225000, "kind": "transfer", "counterparty": {"account_id": 1057, "name": "jun", "user_name": "jun"},
        "transfer_id": 88, "memo": "dinner"}))]
pub struct EntryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[schema(value_type = i64)]
    pub account_id: AccountId,
    /// `in` | `out`.
    #[schema(schema_with = schemas::entry_direction)]
    pub direction: String,
    pub amount: i64,
    /// The account's available balance after this entry.
    pub balance_after: i64,
    /// `charge` | `transfer` | `deposit` | `installment` | `interest` | `pending` | `refund` | `close`.
    #[schema(schema_with = schemas::entry_kind)]
    pub kind: String,
    pub counterparty: Counterparty,
    pub transfer_id: Option<i64>,
    pub memo: Option<String>,
}

impl From<HistoryEntry> for EntryView {
    fn from(entry: HistoryEntry) -> Self {
        EntryView {
            id: entry.id,
            at: entry.at,
            account_id: entry.account_id,
            direction: entry.direction.to_owned(),
            amount: entry.amount,
            balance_after: entry.balance_after,
            kind: entry.kind,
            counterparty: Counterparty {
                account_id: entry.counterparty_account_id,
                name: entry.counterparty_name,
                user_name: entry.counterparty_user_name,
            },
            transfer_id: entry.transfer_id,
            memo: entry.memo,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"entries": [{"id": 5012, "at": "2026-11-24T04:00:00Z", "account_id": 1042, "direction": "out", "amount": 25000,
        "balance_after": 225000, "kind": "transfer", "counterparty": {"account_id": 1057, "name": "jun", "user_name": "jun"},
        "transfer_id": 88, "memo": "dinner"}], "next_cursor": null}))]
pub struct HistoryPage {
    /// Newest first.
    pub entries: Vec<EntryView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"entries": [{"id": 5012, "at": "2026-11-24T04:00:00Z", "account_id": 1042, "direction": "out", "amount": 25000,
        "balance_after": 225000, "kind": "transfer", "counterparty": {"account_id": 1057, "name": "jun", "user_name": "jun"},
        "transfer_id": 88, "memo": "dinner"}], "page": 0, "total": 1}))]
pub struct NaiveHistoryPage {
    /// Newest first.
    pub entries: Vec<EntryView>,
    pub page: i64,
    /// Entries in the range.
    pub total: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"kind": "charge", "in": 300000, "out": 0, "count": 2}))]
pub struct KindTotals {
    #[schema(schema_with = schemas::entry_kind)]
    pub kind: String,
    #[serde(rename = "in")]
    pub in_total: i64,
    #[serde(rename = "out")]
    pub out_total: i64,
    pub count: i64,
}

/// One counterparty: an account, whatever names it was shown under (a sender's display name
/// does not merge them with the user of that name); for top-ups and interest, which have no
/// account, a name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"account_id": 1057, "name": "jun", "user_name": "jun", "in": 0, "out": 25000, "count": 1}))]
pub struct CounterpartyTotals {
    /// The other account; null for the outside world and system accounts.
    pub account_id: Option<i64>,
    /// The name most recently shown for it.
    pub name: String,
    /// Its owner's real user name, as most recently recorded; null for system counterparties
    /// (and for accounts seen only in entries from before it was recorded).
    pub user_name: Option<String>,
    #[serde(rename = "in")]
    pub in_total: i64,
    #[serde(rename = "out")]
    pub out_total: i64,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"in": 300000, "out": 25000, "by_kind": [{"kind": "charge", "in": 300000, "out": 0, "count": 2},
    {"kind": "transfer", "in": 0, "out": 25000, "count": 1}], "top_counterparties": [{"account_id": 1057, "name": "jun",
    "user_name": "jun", "in": 0, "out": 25000, "count": 1}]}))]
pub struct SummaryView {
    #[serde(rename = "in")]
    pub in_total: i64,
    #[serde(rename = "out")]
    pub out_total: i64,
    /// By kind name.
    pub by_kind: Vec<KindTotals>,
    /// The ten counterparties with the most entries, one per counterparty account; ties by
    /// name, then account.
    pub top_counterparties: Vec<CounterpartyTotals>,
}

impl From<Summary> for SummaryView {
    fn from(summary: Summary) -> Self {
        let kind = |totals: Totals| KindTotals {
            kind: totals.name,
            in_total: totals.in_total,
            out_total: totals.out_total,
            count: totals.count,
        };
        let counterparty = |totals: summary::CounterpartyTotals| CounterpartyTotals {
            account_id: totals.account_id,
            name: totals.name,
            user_name: totals.user_name,
            in_total: totals.in_total,
            out_total: totals.out_total,
            count: totals.count,
        };
        SummaryView {
            in_total: summary.in_total,
            out_total: summary.out_total,
            by_kind: summary.by_kind.into_iter().map(kind).collect(),
            top_counterparties: summary.top_counterparties.into_iter().map(counterparty).collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// RFC 3339, inclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: a position in the statement (time and id). With
    /// other filters or another range than its page's, the next page starts after that
    /// position and holds what the new filters and range admit.
    pub cursor: Option<String>,
    /// `in` | `out`.
    #[param(schema_with = schemas::entry_direction)]
    pub direction: Option<String>,
    /// An entry kind: `charge` | `transfer` | `deposit` | `installment` | `interest` |
    /// `pending` | `refund` | `close`.
    #[param(schema_with = schemas::entry_kind)]
    pub kind: Option<String>,
    /// Only entries with this counterparty account.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub counterparty_account_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NaiveHistoryQuery {
    /// RFC 3339, inclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// 0-based page number, at most 100,000.
    #[param(minimum = 0, maximum = 100_000)]
    pub page: Option<i64>,
    /// `in` | `out`.
    #[param(schema_with = schemas::entry_direction)]
    pub direction: Option<String>,
    /// An entry kind: `charge` | `transfer` | `deposit` | `installment` | `interest` |
    /// `pending` | `refund` | `close`.
    #[param(schema_with = schemas::entry_kind)]
    pub kind: Option<String>,
    /// Only entries with this counterparty account.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub counterparty_account_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// RFC 3339, inclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// `in` | `out`.
    #[param(schema_with = schemas::entry_direction)]
    pub direction: Option<String>,
    /// An entry kind: `charge` | `transfer` | `deposit` | `installment` | `interest` |
    /// `pending` | `refund` | `close`.
    #[param(schema_with = schemas::entry_kind)]
    pub kind: Option<String>,
    /// Only entries with this counterparty account.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub counterparty_account_id: Option<String>,
}

fn parse_time(name: &str, text: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| ApiError::validation(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// The requested range, never reaching further back than the retention period: entries older
/// than a year are gone, whether or not the retention job has dropped their partition yet.
fn parse_range(from: Option<&str>, to: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> ApiResult<TimeRange> {
    let mut range = TimeRange { from: parse_time("from", from)?, to: parse_time("to", to)? };
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from > to {
            return Err(ApiError::validation("from must not be after to"));
        }
    }
    let oldest = crate::jobs::retention::oldest_kept(now);
    let from = range.from.map_or(oldest, |from| from.max(oldest));
    // A range wholly older than a year is empty.
    range.from = Some(range.to.map_or(from, |to| from.min(to)));
    Ok(range)
}

fn parse_filters(direction: Option<&str>, kind: Option<&str>, counterparty: Option<&str>) -> ApiResult<Filters> {
    Filters::parse(direction, kind, counterparty).map_err(ApiError::validation)
}

/// 404 unless the caller owns the account.
async fn check_owner(state: &AppState, caller: AuthUser, account_id: AccountId) -> ApiResult<()> {
    let mut conn = state.read_pool().await.acquire().await?;
    accounts::get_owned(&mut conn, caller.user_id, account_id).await?.ok_or(ApiError::NotFound)?;
    Ok(())
}

fn with_source(source: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(HeaderName::from_static(SOURCE_HEADER), HeaderValue::from_static(source));
    response
}

/// Runs a read on a cancellable copy of the ClickHouse store, within
/// `MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS`; `None` (and a warning) when it fails or is too slow.
/// Queries of the read that may still run on ClickHouse are killed: after a timeout or a
/// failure (a summary's other query), and when the request itself is dropped (the caller went
/// away, the request timed out, or the ownership check refused it first).
async fn from_clickhouse<T, F>(state: &AppState, what: &str, read: impl FnOnce(ClickHouse) -> F) -> Option<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let (clickhouse, cancel) = state.clickhouse.cancellable();
    match tokio::time::timeout(state.config.clickhouse_timeouts.history_read, read(clickhouse)).await {
        Ok(Ok(value)) => {
            cancel.finished();
            Some(value)
        }
        Ok(Err(error)) => {
            // Unreachable: nothing runs there, and a KILL would fail the same way.
            if error.chain().any(|cause| matches!(cause.downcast_ref(), Some(clickhouse::error::Error::Network(_)))) {
                cancel.finished();
            }
            tracing::warn!(error = format!("{error:#}"), what, "ClickHouse failed; answering from PostgreSQL");
            None
        }
        Err(_) => {
            tracing::warn!(what, "ClickHouse timed out; answering from PostgreSQL and cancelling its queries");
            None
        }
    }
}

/// The account's statement, newest first, with a keyset cursor; every entry committed before
/// the request is on it, however far behind the forwarder is. `X-History-Source` says which
/// store answered: `postgres`, the keyset index on (account, time, id), a few index entries
/// at any depth (the usual answer; a counterparty filter has its own index); `clickhouse`,
/// for a direction or kind that the first 2,000 entries from the cursor on do not fill (a rare
/// kind on a busy account), with the entries still waiting in the outbox added from
/// PostgreSQL; `postgres-fallback`, when ClickHouse was asked but is unreachable or too slow
/// and PostgreSQL read as far as needed.
/// `X-History-Lag-Ms` tells how far behind ClickHouse is.
#[utoipa::path(get, path = "/v1/accounts/{id}/history", tag = "history", security(("bearer" = [])),
    params(("id" = i64, Path), HistoryQuery),
    responses((status = 200, body = HistoryPage, description = "A page of the statement, newest first; `next_cursor` is null on the last",
               headers(("X-History-Source" = String, description = "postgres | clickhouse | postgres-fallback"),
                       ("X-History-Lag-Ms" = i64, description = "now minus the oldest entry not yet in ClickHouse; 0 only when none waits"))),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad time (or `from` after `to`), limit, cursor or filter")))]
pub async fn get_history(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Response {
    let mut lag = None;
    let mut response = tuned_history(&state, caller, account_id, query, &mut lag).await.into_response();
    if let Some(lag) = lag {
        set_lag(&state, &mut response, lag);
    }
    response
}

/// The tuned page; `lag` is set as soon as PostgreSQL has told it, with the ownership (and,
/// usually, the page itself) in the same statement.
async fn tuned_history(
    state: &AppState,
    caller: AuthUser,
    account_id: AccountId,
    query: HistoryQuery,
    lag: &mut Option<i64>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let range = parse_range(query.from.as_deref(), query.to.as_deref(), now)?;
    let limit = page_size(query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|text| Cursor::decode(text).ok_or_else(|| ApiError::validation("malformed cursor")))
        .transpose()?;
    let filters =
        parse_filters(query.direction.as_deref(), query.kind.as_deref(), query.counterparty_account_id.as_deref())?;
    let mut conn = state.read_pool().await.acquire().await?;
    // Without filters every entry read is on the page, and a counterparty has its own index:
    // then the page comes with the ownership and the lag, in one round trip.
    let probe = if filters.is_empty() || filters.counterparty_account_id.is_some() {
        pg::owned_keyset_page(&mut conn, caller.user_id, account_id, range, &filters, cursor, limit).await?
    } else {
        pg::owner_and_oldest_waiting(&mut conn, caller.user_id, account_id).await?
    };
    *lag = Some(lag_since(probe.oldest_waiting, now));
    if !probe.owned {
        return Err(ApiError::NotFound);
    }
    if let Some(rows) = probe.rows {
        return rows_response(account_id, &rows, limit);
    }
    let bounded = pg::bounded_keyset_page(&mut conn, account_id, range, &filters, cursor, limit, PG_SCAN_MAX).await?;
    if let Some(page) = bounded {
        return Ok(page_response("postgres", page));
    }
    // Read before ClickHouse: an entry forwarded in between is then in ClickHouse's answer.
    let waiting = pg::waiting_entries(&mut conn, account_id, range, &filters, cursor, limit).await?;
    drop(conn);
    let read_filters = filters.clone();
    let tuned = from_clickhouse(state, "history page", move |clickhouse| async move {
        ch::tuned_entries(&clickhouse, account_id, range, &read_filters, cursor, limit, now).await
    })
    .await;
    let (source, page) = match tuned {
        Some(entries) => ("clickhouse", merge_pages(entries, waiting, limit)),
        None => {
            let mut conn = state.read_pool().await.acquire().await?;
            ("postgres-fallback", pg::keyset_page(&mut conn, account_id, range, &filters, cursor, limit).await?)
        }
    };
    Ok(page_response(source, page))
}

fn page_response(source: &'static str, page: Page) -> Response {
    let body = HistoryPage {
        entries: page.entries.into_iter().map(EntryView::from).collect(),
        next_cursor: page.next.map(|cursor| cursor.encode()),
    };
    with_source(source, Json(body))
}

/// An entry as [`EntryView`] shows it, borrowed from its row: the same JSON, written without
/// copying the entry's texts first.
#[derive(Serialize)]
struct EntryJson<'r> {
    id: i64,
    #[serde(serialize_with = "rfc3339")]
    at: DateTime<Utc>,
    account_id: AccountId,
    direction: &'static str,
    amount: i64,
    balance_after: i64,
    kind: &'r str,
    counterparty: CounterpartyJson<'r>,
    transfer_id: Option<i64>,
    memo: Option<&'r str>,
}

#[derive(Serialize)]
struct CounterpartyJson<'r> {
    account_id: Option<i64>,
    name: &'r str,
    user_name: Option<&'r str>,
}

/// [`HistoryPage`] of borrowed entries.
#[derive(Serialize)]
struct PageJson<'r> {
    entries: Vec<EntryJson<'r>>,
    next_cursor: Option<String>,
}

impl<'r> EntryJson<'r> {
    fn new(account_id: AccountId, entry: pg::EntryRow<'r>) -> Self {
        EntryJson {
            id: entry.id,
            at: entry.at,
            account_id,
            direction: entry.direction,
            amount: entry.amount,
            balance_after: entry.balance_after,
            kind: entry.kind,
            counterparty: CounterpartyJson {
                account_id: entry.counterparty_account_id,
                name: entry.counterparty_name,
                user_name: entry.counterparty_user_name,
            },
            transfer_id: entry.transfer_id,
            memo: entry.memo,
        }
    }
}

/// The page of [`pg::owned_keyset_page`]'s rows (at most `limit + 1`, newest first) as
/// [`page_response`] answers it, written straight from the rows into one buffer.
fn rows_response(account_id: AccountId, rows: &[PgRow], limit: i64) -> ApiResult<Response> {
    let mut entries = rows
        .iter()
        .map(|row| pg::entry_row(row).map(|entry| EntryJson::new(account_id, entry)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let limit = limit.max(0) as usize;
    let mut next_cursor = None;
    if entries.len() > limit {
        entries.truncate(limit);
        next_cursor = entries.last().map(|last| next_cursor_of(entries[0].at, (last.at, last.id), limit).encode());
    }
    // About 300 bytes an entry.
    let mut body = Vec::with_capacity(64 + entries.len() * 320);
    serde_json::to_writer(&mut body, &PageJson { entries, next_cursor }).map_err(anyhow::Error::from)?;
    let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    Ok(with_source("postgres", (content_type, body)))
}

/// A time as chrono's `Serialize` writes it (RFC 3339, `Z`, as many fractional digits as the
/// value needs: none, 3, 6 or 9), without going through `fmt`.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; 30];
    match rfc3339_into(at, &mut text).and_then(|len| std::str::from_utf8(&text[..len]).ok()) {
        Some(text) => serializer.serialize_str(text),
        None => at.serialize(serializer),
    }
}

/// The length written; `None` for what chrono writes otherwise (years outside 0..=9999, leap
/// seconds).
fn rfc3339_into(at: &DateTime<Utc>, text: &mut [u8; 30]) -> Option<usize> {
    use chrono::{Datelike, Timelike};
    let year = at.year();
    let nano = at.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    let mut digits = |at: usize, mut value: u32, width: usize| {
        for place in (at..at + width).rev() {
            text[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, year as u32, 4);
    digits(5, at.month(), 2);
    digits(8, at.day(), 2);
    digits(11, at.hour(), 2);
    digits(14, at.minute(), 2);
    digits(17, at.second(), 2);
    let (fraction, width) = match nano {
        0 => (0, 0),
        _ if nano.is_multiple_of(1_000_000) => (nano / 1_000_000, 3),
        _ if nano.is_multiple_of(1_000) => (nano / 1_000, 6),
        _ => (nano, 9),
    };
    digits(20, fraction, width);
    for (place, byte) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
        text[place] = byte;
    }
    let end = if width == 0 { 19 } else { 20 + width };
    text[end] = b'Z';
    Some(end + 1)
}

/// The same entries as `/history`, the way a first version would serve them: PostgreSQL,
/// `OFFSET` paging and a total count (of the entries the filters admit).
#[utoipa::path(get, path = "/v1/accounts/{id}/history/naive", tag = "history", security(("bearer" = [])),
    params(("id" = i64, Path), NaiveHistoryQuery),
    responses((status = 200, body = NaiveHistoryPage, description = "A page of the statement, newest first, and how many entries the range holds"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad time (or `from` after `to`), limit, page or filter")))]
pub async fn get_history_naive(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    ApiQuery(query): ApiQuery<NaiveHistoryQuery>,
) -> ApiResult<Response> {
    let range = parse_range(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let limit = page_size(query.limit)?;
    let page = query.page.unwrap_or(0);
    if !(0..=NAIVE_PAGE_MAX).contains(&page) {
        return Err(ApiError::validation(format!("page must be between 0 and {NAIVE_PAGE_MAX}")));
    }
    let filters =
        parse_filters(query.direction.as_deref(), query.kind.as_deref(), query.counterparty_account_id.as_deref())?;
    check_owner(&state, caller, account_id).await?;
    let mut conn = state.read_pool().await.acquire().await?;
    let (entries, total) = pg::naive_page(&mut conn, account_id, range, &filters, page, limit).await?;
    let body = NaiveHistoryPage { entries: entries.into_iter().map(EntryView::from).collect(), page, total };
    Ok(with_source("postgres", Json(body)))
}

/// Money in and out over the range, by kind and for the ten most frequent counterparties,
/// of the entries the filters admit; every entry committed before the request counts.
/// `X-History-Source`: `postgres` for a range with few entries (PostgreSQL's index answers
/// sooner than any ClickHouse query); `clickhouse`, ClickHouse's daily totals for whole days
/// (a busy account's closed days from the copy this process keeps of them, so such a summary
/// may answer while ClickHouse is down), the entries for partial days, plus the entries still
/// waiting in the outbox from PostgreSQL; `postgres-fallback` when ClickHouse is needed but
/// unreachable or too slow.
#[utoipa::path(get, path = "/v1/accounts/{id}/history/summary", tag = "history", security(("bearer" = [])),
    params(("id" = i64, Path), SummaryQuery),
    responses((status = 200, body = SummaryView, description = "Totals over the range",
               headers(("X-History-Source" = String, description = "postgres | clickhouse | postgres-fallback"))),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad time (or `from` after `to`) or filter")))]
pub async fn get_summary(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    ApiQuery(query): ApiQuery<SummaryQuery>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let range = parse_range(query.from.as_deref(), query.to.as_deref(), now)?;
    let filters =
        parse_filters(query.direction.as_deref(), query.kind.as_deref(), query.counterparty_account_id.as_deref())?;
    let mut conn = state.read_pool().await.acquire().await?;
    let start =
        summary::summary_start(&mut conn, (caller.user_id, account_id), (range, &filters), SUMMARY_PG_MAX, now).await?;
    if !start.owned {
        return Err(ApiError::NotFound);
    }
    if let Some(summary) = start.few {
        return Ok(with_source("postgres", Json(SummaryView::from(summary))));
    }
    // Read before ClickHouse: an entry forwarded in between is then in ClickHouse's answer,
    // and left out of it by id. (With nothing waiting when the request began, every entry
    // committed before it is in ClickHouse.)
    let waiting = if start.any_waiting {
        pg::waiting_entries(&mut conn, account_id, range, &filters, None, i64::MAX - 1).await?
    } else {
        Vec::new()
    };
    // The partial days at either end (and the days with entries waiting) from PostgreSQL's
    // index when they are few, while ClickHouse reads its daily totals of the whole days (then
    // only their totals are needed: the top counterparties' names come from PostgreSQL after).
    let split = aggregates::summary_split(range, &waiting);
    let edge_filters = filters.clone();
    let edges = async move {
        match split {
            Some(split) => {
                let windows = (split.edges, split.days.is_some());
                pg::entries_within(&mut conn, account_id, (range, &edge_filters), windows, SUMMARY_EDGES_PG_MAX).await
            }
            None => Ok(None),
        }
    };
    let read_filters = filters.clone();
    // Closed days may be read into memory when ClickHouse holds all their entries: nothing
    // waited, or every waiting entry of the account was read (no filters), and the days end
    // before the first.
    let closed_end = closed_days::closed_end(micros(now), start.running_since.map(micros));
    let may_fill = !start.any_waiting || filters.is_empty();
    let closed = ClosedRead { days: &state.closed_days, end: closed_end, may_fill };
    let tuned = from_clickhouse(&state, "history summary", move |clickhouse| async move {
        aggregates::summary(&clickhouse, account_id, (range, &read_filters), &waiting, edges, Some(closed)).await
    })
    .await;
    let (source, summary) = match tuned {
        Some(unnamed) => {
            let mut conn = state.read_pool().await.acquire().await?;
            ("clickhouse", summary::named(&mut conn, account_id, range, &filters, unnamed).await?)
        }
        None => {
            let mut conn = state.read_pool().await.acquire().await?;
            ("postgres-fallback", summary::naive_summary(&mut conn, account_id, range, &filters).await?)
        }
    };
    Ok(with_source(source, Json(SummaryView::from(summary))))
}

/// The same summary as `/history/summary`, computed by PostgreSQL.
#[utoipa::path(get, path = "/v1/accounts/{id}/history/summary/naive", tag = "history", security(("bearer" = [])),
    params(("id" = i64, Path), SummaryQuery),
    responses((status = 200, body = SummaryView, description = "Totals over the range"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad time (or `from` after `to`) or filter")))]
pub async fn get_summary_naive(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    ApiQuery(query): ApiQuery<SummaryQuery>,
) -> ApiResult<Response> {
    let range = parse_range(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let filters =
        parse_filters(query.direction.as_deref(), query.kind.as_deref(), query.counterparty_account_id.as_deref())?;
    check_owner(&state, caller, account_id).await?;
    let mut conn = state.read_pool().await.acquire().await?;
    let summary = summary::naive_summary(&mut conn, account_id, range, &filters).await?;
    Ok(with_source("postgres", Json(SummaryView::from(summary))))
}

/// Adds `X-History-Lag-Ms` to every history response (errors included); left out only when
/// PostgreSQL cannot say. Measured while the request is served, not after it, on the server
/// the request's reads go to (as of the request's arrival at the latest). The tuned route
/// reads it with its page, in the same statement: it is measured here only when that route
/// answered before asking PostgreSQL (bad input, no session).
pub async fn lag_header(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let lag = async {
        match state.read_pool().await.acquire().await {
            Ok(mut conn) => lag_ms(&mut conn, state.clock.now()).await.ok(),
            Err(_) => None,
        }
    };
    // Only the tuned route's path ends so among the routes this layer wraps.
    if request.uri().path().ends_with("/history") {
        let mut response = next.run(request).await;
        if !response.headers().contains_key(LAG_HEADER) {
            if let Some(lag) = lag.await {
                set_lag(&state, &mut response, lag);
            }
        }
        return response;
    }
    let (mut response, lag) = tokio::join!(next.run(request), lag);
    if let Some(lag) = lag {
        set_lag(&state, &mut response, lag);
    }
    response
}

fn set_lag(state: &AppState, response: &mut Response, lag: i64) {
    state.metrics.history_lag_ms.set(lag);
    response.headers_mut().insert(HeaderName::from_static(LAG_HEADER), HeaderValue::from(lag));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let mut times: Vec<DateTime<Utc>> = [
            0,
            1_767_225_600_000_000,
            1_767_225_600_123_000,
            1_767_225_600_123_456,
            1_767_225_600_000_001,
            1_767_225_600_100_000,
            253_402_300_799_999_999,
            -1,
        ]
        .into_iter()
        .filter_map(DateTime::from_timestamp_micros)
        .collect();
        times.extend(
            [DateTime::from_timestamp(1_767_225_600, 123_456_789), DateTime::from_timestamp(-62_198_755_200, 0)]
                .into_iter()
                .flatten(),
        );
        let mut seed: i64 = 0x5eed;
        for _ in 0..2_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let micros = seed.rem_euclid(253_402_300_800_000_000);
            // Every precision: whole seconds, milliseconds, microseconds.
            let micros = match seed.rem_euclid(3) {
                0 => micros - micros % 1_000_000,
                1 => micros - micros % 1_000,
                _ => micros,
            };
            times.extend(DateTime::from_timestamp_micros(micros));
        }
        #[derive(Serialize)]
        struct Fast(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);
        for at in times {
            assert_eq!(serde_json::to_string(&Fast(at)).unwrap(), serde_json::to_string(&at).unwrap(), "{at:?}");
        }
    }
}
