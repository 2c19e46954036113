//! The statement entry in its three shapes (PostgreSQL row, ClickHouse row, the API's view),
//! the conversions between them, and the keyset cursor and page every page query shares.

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::domain::ids::AccountId;

/// `Enum8('in' = 1, 'out' = 2)` in ClickHouse.
pub const DIRECTION_IN: i8 = 1;
pub const DIRECTION_OUT: i8 = 2;

/// A statement entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub account_id: AccountId,
    pub direction: &'static str,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: String,
    /// The counterparty's real user name, beside the name shown.
    pub counterparty_user_name: Option<String>,
    pub transfer_id: Option<i64>,
    /// An empty memo is no memo, in both stores.
    pub memo: Option<String>,
}

impl HistoryEntry {
    pub fn cursor(&self) -> Cursor {
        Cursor { at_us: self.at.timestamp_micros(), id: self.id, gap_us: None }
    }
}

/// A statement entry as PostgreSQL stores it.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct PgEntry {
    pub id: i64,
    pub account_id: AccountId,
    pub at: DateTime<Utc>,
    pub direction: String,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: String,
    pub transfer_id: Option<i64>,
    pub memo: Option<String>,
    pub counterparty_user_name: Option<String>,
}

/// The columns of [`PgEntry`], for `SELECT`s of `statement_entries`.
pub const PG_ENTRY_COLUMNS: &str =
    "id, account_id, at, direction, amount, balance_after, kind, counterparty_account_id,
     counterparty_name, transfer_id, memo, counterparty_user_name";

/// [`PG_ENTRY_COLUMNS`] with only what a summary's totals add up (kind, direction, amount,
/// counterparty; the name only of a counterparty without an account, which is its key): the
/// other fields are left empty, and a busy account's partial days decode in half the time.
pub const PG_TOTALS_COLUMNS: &str =
    "id, account_id, at, direction, amount, 0::int8 AS balance_after, kind, counterparty_account_id,
     CASE WHEN counterparty_account_id IS NULL THEN counterparty_name ELSE '' END AS counterparty_name,
     NULL::int8 AS transfer_id, NULL::text AS memo, NULL::text AS counterparty_user_name";

/// A row of ClickHouse `statement_entries`, in column order (RowBinary has no names).
#[derive(clickhouse::Row, serde::Serialize, Debug, Clone, PartialEq)]
pub struct ClickHouseEntry {
    pub entry_id: u64,
    pub account_id: AccountId,
    /// `DateTime('UTC')`: whole seconds since the epoch.
    pub at: u32,
    pub at_us: i64,
    /// `Enum8('in' = 1, 'out' = 2)`.
    pub direction: i8,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: String,
    pub transfer_id: Option<i64>,
    /// NULL in PostgreSQL is the empty string here.
    pub memo: String,
    /// `Nullable(String)`, added by `0002`: NULL for system counterparties (and older entries).
    pub counterparty_user_name: Option<String>,
    /// Added by `0009`, for analysts: the account's kind (`main`, `savings`) and its owner.
    pub account_kind: String,
    pub owner_user_id: i64,
}

/// The columns a ClickHouse page reads, in the order of [`ClickHouseEntryRow`].
pub const CLICKHOUSE_ENTRY_COLUMNS: &str = "entry_id, at_us, direction, amount, balance_after, kind,
     counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name";

/// An entry read back from ClickHouse (without its account: the query names it).
#[derive(clickhouse::Row, serde::Deserialize, Debug)]
pub struct ClickHouseEntryRow {
    pub entry_id: u64,
    pub at_us: i64,
    pub direction: i8,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub counterparty_account_id: Option<i64>,
    pub counterparty_name: String,
    pub transfer_id: Option<i64>,
    pub memo: String,
    pub counterparty_user_name: Option<String>,
}

pub(crate) fn direction_name(text: &str) -> anyhow::Result<&'static str> {
    match text {
        "in" => Ok("in"),
        "out" => Ok("out"),
        other => anyhow::bail!("unknown direction {other:?}"),
    }
}

fn direction_code(text: &str) -> anyhow::Result<i8> {
    match text {
        "in" => Ok(DIRECTION_IN),
        "out" => Ok(DIRECTION_OUT),
        other => anyhow::bail!("unknown direction {other:?}"),
    }
}

fn non_empty(memo: Option<String>) -> Option<String> {
    memo.filter(|memo| !memo.is_empty())
}

impl TryFrom<PgEntry> for HistoryEntry {
    type Error = anyhow::Error;

    fn try_from(entry: PgEntry) -> anyhow::Result<Self> {
        Ok(HistoryEntry {
            id: entry.id,
            at: entry.at,
            account_id: entry.account_id,
            direction: direction_name(&entry.direction)?,
            amount: entry.amount,
            balance_after: entry.balance_after,
            kind: entry.kind,
            counterparty_account_id: entry.counterparty_account_id,
            counterparty_name: entry.counterparty_name,
            counterparty_user_name: entry.counterparty_user_name,
            transfer_id: entry.transfer_id,
            memo: non_empty(entry.memo),
        })
    }
}

impl PgEntry {
    /// The ClickHouse row of this entry of an account of `account_kind` owned by `owner_user_id`.
    pub fn to_clickhouse(&self, account_kind: &str, owner_user_id: i64) -> anyhow::Result<ClickHouseEntry> {
        let at_us = self.at.timestamp_micros();
        let seconds = at_us.div_euclid(1_000_000);
        let direction = direction_code(&self.direction).with_context(|| format!("statement entry {}", self.id))?;
        Ok(ClickHouseEntry {
            entry_id: u64::try_from(self.id).with_context(|| format!("negative entry id {}", self.id))?,
            account_id: self.account_id,
            at: u32::try_from(seconds)
                .with_context(|| format!("entry {} time {} outside DateTime", self.id, self.at))?,
            at_us,
            direction,
            amount: self.amount,
            balance_after: self.balance_after,
            kind: self.kind.clone(),
            counterparty_account_id: self.counterparty_account_id,
            counterparty_name: self.counterparty_name.clone(),
            transfer_id: self.transfer_id,
            memo: self.memo.clone().unwrap_or_default(),
            counterparty_user_name: self.counterparty_user_name.clone(),
            account_kind: account_kind.to_owned(),
            owner_user_id,
        })
    }
}

impl ClickHouseEntryRow {
    pub fn into_entry(self, account_id: AccountId) -> anyhow::Result<HistoryEntry> {
        let direction = match self.direction {
            DIRECTION_IN => "in",
            DIRECTION_OUT => "out",
            other => anyhow::bail!("entry {} has direction {other}", self.entry_id),
        };
        Ok(HistoryEntry {
            id: i64::try_from(self.entry_id)?,
            at: DateTime::from_timestamp_micros(self.at_us)
                .ok_or_else(|| anyhow::anyhow!("entry {} time out of range", self.entry_id))?,
            account_id,
            direction,
            amount: self.amount,
            balance_after: self.balance_after,
            kind: self.kind,
            counterparty_account_id: self.counterparty_account_id,
            counterparty_name: self.counterparty_name,
            counterparty_user_name: self.counterparty_user_name,
            transfer_id: self.transfer_id,
            memo: non_empty(Some(self.memo)),
        })
    }
}

/// `from` inclusive, `to` exclusive; either may be open.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Entry kinds, as stored and shown.
pub const KINDS: [&str; 8] = ["charge", "transfer", "deposit", "installment", "interest", "pending", "refund", "close"];

/// Which entries of an account a read shows: every given condition holds (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub direction: Option<&'static str>,
    /// One of [`KINDS`].
    pub kind: Option<&'static str>,
    pub counterparty_account_id: Option<i64>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// Filters from their query-string texts; `Err` names the first bad one.
    pub fn parse(
        direction: Option<&str>,
        kind: Option<&str>,
        counterparty_account_id: Option<&str>,
    ) -> Result<Filters, &'static str> {
        let direction = direction.map(direction_name).transpose().map_err(|_| "direction must be in or out")?;
        let kind = kind
            .map(|kind| KINDS.iter().copied().find(|known| *known == kind).ok_or("kind must be an entry kind"))
            .transpose()?;
        let counterparty_account_id = counterparty_account_id
            .map(|id| {
                id.parse::<i64>().ok().filter(|id| *id > 0).ok_or("counterparty_account_id must be an account id")
            })
            .transpose()?;
        Ok(Filters { direction, kind, counterparty_account_id })
    }
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Cursor times are before 10000-01-01T00:00:00Z (in microseconds): every entry's time is, and
/// both stores can compare against any such instant. Later ones are refused as malformed.
const CURSOR_AT_US_END: i64 = 253_402_300_800_000_000;

/// The last entry of a page: the next page holds what sorts after it (older, or as old with
/// a smaller id). `gap_us`, the page's mean time between entries, only sizes the next page's
/// first window: it never changes which entries a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: i64,
    pub gap_us: Option<i64>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self.gap_us {
            Some(gap_us) => format!("h{}.{}.{gap_us}", self.at_us, self.id),
            None => format!("h{}.{}", self.at_us, self.id),
        }
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let mut parts = text.strip_prefix('h')?.split('.');
        let at_us: i64 = parts.next()?.parse().ok()?;
        let id: i64 = parts.next()?.parse().ok()?;
        let gap_us = match parts.next() {
            None => None,
            Some(gap) => Some(gap.parse::<i64>().ok().filter(|gap| *gap >= 0)?),
        };
        let in_range = (0..CURSOR_AT_US_END).contains(&at_us);
        (parts.next().is_none() && in_range && id > 0).then_some(Cursor { at_us, id, gap_us })
    }
}

pub struct Page {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<Cursor>,
}

/// A page of at most `limit` entries from `limit + 1` read: the extra one says there is more.
pub(crate) fn page_of(mut entries: Vec<HistoryEntry>, limit: i64) -> Page {
    let limit = limit.max(0) as usize;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|last| next_cursor(entries[0].at, (last.at, last.id), entries.len()))
    } else {
        None
    };
    Page { entries, next }
}

/// The cursor of a full page of `count` entries, the first at `first_at` and the last at
/// `last_at` with `last_id`: after the last, with the page's mean gap between entries.
pub(crate) fn next_cursor(first_at: DateTime<Utc>, (last_at, last_id): (DateTime<Utc>, i64), count: usize) -> Cursor {
    let gaps = count as i64 - 1;
    let gap_us = (gaps > 0).then(|| (micros(first_at) - micros(last_at)).max(0) / gaps);
    Cursor { at_us: micros(last_at), id: last_id, gap_us }
}

/// One page from two partial answers, each holding the first `limit + 1` entries of its own
/// store (or all it has): the union, once each, newest first.
pub(crate) fn merge_pages(mut entries: Vec<HistoryEntry>, more: Vec<HistoryEntry>, limit: i64) -> Page {
    entries.extend(more);
    entries.sort_by_key(|entry| std::cmp::Reverse((entry.at, entry.id)));
    entries.dedup_by_key(|entry| entry.id);
    entries.truncate(limit.max(0) as usize + 1);
    page_of(entries, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for gap_us in [None, Some(0), Some(63_000_000)] {
            let cursor = Cursor { at_us: 1_767_225_600_000_001, id: 42, gap_us };
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
        // Cursors without a hint (from before there was one) still work.
        assert_eq!(Cursor::decode("h7.42"), Some(Cursor { at_us: 7, id: 42, gap_us: None }));
        // The last microsecond of the year 9999 is the latest cursor time, and it is an instant.
        let latest = Cursor::decode("h253402300799999999.1").unwrap();
        assert!(DateTime::from_timestamp_micros(latest.at_us).is_some());
        for bad in [
            "",
            "h",
            "h1",
            "h1.",
            "h.1",
            "hx.1",
            "h1.0",
            "h-1.1",
            "i42",
            "h1.2.",
            "h1.2.x",
            "h1.2.-3",
            "h1.2.3.4",
            "h9223372036854775807.1",
            "h253402300800000000.1",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_full_page_hints_its_density_to_the_next() {
        let entry = |id: i64, at_us: i64| HistoryEntry {
            id,
            at: DateTime::from_timestamp_micros(at_us).unwrap(),
            account_id: AccountId::new(1),
            direction: "in",
            amount: 1,
            balance_after: 1,
            kind: "charge".to_owned(),
            counterparty_account_id: None,
            counterparty_name: "external".to_owned(),
            counterparty_user_name: None,
            transfer_id: None,
            memo: None,
        };
        let entries = vec![entry(4, 4_000), entry(3, 3_000), entry(2, 1_000), entry(1, 500)];
        let page = page_of(entries.clone(), 3);
        assert_eq!(page.entries.len(), 3);
        assert_eq!(page.next, Some(Cursor { at_us: 1_000, id: 2, gap_us: Some(1_500) }));
        assert_eq!(page_of(entries.clone(), 1).next, Some(Cursor { at_us: 4_000, id: 4, gap_us: None }));
        assert_eq!(page_of(entries.clone(), 4).next, None);
        // Two stores' answers overlap (an entry forwarded between the reads): each entry once.
        let merged = merge_pages(entries[1..].to_vec(), entries[..3].to_vec(), 2);
        assert_eq!(merged.entries.iter().map(|entry| entry.id).collect::<Vec<_>>(), vec![4, 3]);
        assert_eq!(merged.next.map(|cursor| cursor.id), Some(3));
    }

    #[test]
    fn filters_parse_and_refuse_bad_values() {
        assert_eq!(Filters::parse(None, None, None), Ok(Filters::default()));
        let filters = Filters::parse(Some("out"), Some("transfer"), Some("7")).unwrap();
        assert_eq!(
            filters,
            Filters { direction: Some("out"), kind: Some("transfer"), counterparty_account_id: Some(7) }
        );
        for (direction, kind, counterparty) in [
            (Some("IN"), None, None),
            (Some(""), None, None),
            (None, Some("gift"), None),
            (None, None, Some("x")),
            (None, None, Some("0")),
            (None, None, Some("-3")),
        ] {
            assert!(Filters::parse(direction, kind, counterparty).is_err(), "{direction:?} {kind:?} {counterparty:?}");
        }
    }
}
