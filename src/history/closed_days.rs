//! The daily counterparty totals of closed days, kept in memory for the accounts whose
//! summaries reach ClickHouse.
//!
//! A busy account's 30-day summary has to count every counterparty of every day: some 30,000
//! rows of `daily_counterparty_totals` on an account with 1,400 entries a day, whose grouping
//! costs ClickHouse 18.16 several milliseconds on each request, although the rows of the
//! days before yesterday no longer change. So each process keeps them: the first summary that
//! reaches a closed day reads it from ClickHouse, and later ones read it from memory, leaving
//! ClickHouse only the days since (one or two).
//!
//! **When a day is closed.** The ledger writer stamps entries with the clock and commits them
//! within milliseconds; a job run stamps its entries with the time it began (it may run for
//! minutes). So a day counts as closed when it ended an hour ago by the clock and before every
//! job run still in progress began ([`closed_end`]; runs begun over a day ago, left over from
//! a crash, are not waited for): no entry of it can commit any more.
//! A closed day is read from ClickHouse into memory only when ClickHouse holds all of its
//! entries: the caller says so (`may_fill`) when nothing waited in the outbox as the request
//! began, or when the account's waiting entries (all of them, without filters) were read and
//! the days end before the first of them ([`super::aggregates::split`]).
//!
//! **What leaves.** Reads never reach back past a year (`jobs::retention::oldest_kept`), so a
//! month the retention job drops is never asked for again; the days of an account older than
//! 13 months go when it is filled. When more than `max_rows` rows are kept, the accounts used
//! least recently go (`MINIPAY_SUMMARY_CACHE_ROWS`; 0 keeps nothing).
//!
//! **Locks.** The accounts are spread over shards, each behind its own read-write lock: a
//! request takes a read lock; only an account's first fill and the eviction write. An
//! account's days have their own lock, written only by a fill.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use super::clickhouse::ClickHouse;
use super::entry::{Filters, DIRECTION_IN, DIRECTION_OUT};
use crate::domain::ids::AccountId;

pub const DAY_US: i64 = 86_400 * 1_000_000;
const SHARDS: usize = 16;
/// Days of an account older than this (in days before the newest asked) leave at a fill.
const KEPT_DAYS: i64 = 400;

/// How long after its end a day is closed, unless a job run is in progress ([`closed_end`]).
pub const SETTLE_US: i64 = 3_600 * 1_000_000;

/// The first day (since the epoch, UTC) that is not closed at `now_us`, when the oldest job
/// run in progress began at `running_since_us`: every day before it ended an hour before
/// `now_us`, and before that run began.
pub fn closed_end(now_us: i64, running_since_us: Option<i64>) -> i64 {
    let settled = now_us.saturating_sub(SETTLE_US).div_euclid(DAY_US);
    running_since_us.map_or(settled, |since| settled.min(since.div_euclid(DAY_US)))
}

/// One counterparty's totals of one kind and direction on one day.
#[derive(Debug, Clone, Copy)]
struct Row {
    counterparty_id: i64,
    amount: i64,
    entries: u64,
    /// Index into the day's `keys` (0: '', a counterparty with an account).
    key: u32,
    /// Index into the day's `kinds`.
    kind: u8,
    direction: i8,
}

/// A row of a day as [`DayRows::each`] hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRow<'a> {
    pub counterparty_id: i64,
    /// The name of a counterparty without an account, '' for one with an account.
    pub counterparty_key: &'a str,
    pub kind: &'a str,
    /// [`super::entry::DIRECTION_IN`] or [`super::entry::DIRECTION_OUT`].
    pub direction: i8,
    pub entries: u64,
    pub amount: i64,
}

/// The counterparty totals of one day of one account.
#[derive(Debug, Default)]
pub struct DayRows {
    keys: Vec<String>,
    kinds: Vec<String>,
    rows: Vec<Row>,
}

impl DayRows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn each<'a>(&'a self, mut visit: impl FnMut(DayRow<'a>)) {
        for row in &self.rows {
            visit(DayRow {
                counterparty_id: row.counterparty_id,
                counterparty_key: &self.keys[row.key as usize],
                kind: &self.kinds[usize::from(row.kind)],
                direction: row.direction,
                entries: row.entries,
                amount: row.amount,
            });
        }
    }

    fn push(&mut self, row: FetchedRow) {
        let intern = |table: &mut Vec<String>, text: String| match table.iter().position(|known| *known == text) {
            Some(index) => index,
            None => {
                table.push(text);
                table.len() - 1
            }
        };
        if self.keys.is_empty() {
            self.keys.push(String::new());
        }
        let key = if row.counterparty_key.is_empty() { 0 } else { intern(&mut self.keys, row.counterparty_key) };
        let kind = intern(&mut self.kinds, row.kind);
        self.rows.push(Row {
            counterparty_id: row.counterparty_id,
            amount: row.amount,
            entries: row.entries,
            key: u32::try_from(key).unwrap_or(u32::MAX),
            kind: u8::try_from(kind).unwrap_or(u8::MAX),
            direction: row.direction_code,
        });
    }
}

#[derive(Default)]
struct AccountDays {
    days: RwLock<BTreeMap<i64, Arc<DayRows>>>,
    /// The sums of the latest runs of days summaries without filters read, at most
    /// [`WINDOWS_MAX`].
    windows: RwLock<Vec<Arc<WindowTotals>>>,
    /// Rows of `days`, and counterparties of `windows`.
    rows: AtomicUsize,
    last_use: AtomicU64,
}

/// Runs of days summed per account: a 30-day summary's and a whole year's.
const WINDOWS_MAX: usize = 2;

/// The totals of a run of closed days of an account, without filters, summed once for every
/// summary that reads them (the day's of a 30-day summary, read again and again, move on only
/// once a day).
#[derive(Debug)]
pub struct WindowTotals {
    first: i64,
    end: i64,
    /// By kind, in name order.
    pub kinds: Vec<(String, Sums)>,
    /// The counterparties with the most entries, most first (at most the `top_max` asked).
    pub top: Vec<(CounterpartyKeyOwned, Sums)>,
    /// The most entries a counterparty left out of `top` has (0: none is).
    pub rest_max: u64,
    accounts: FxHashMap<i64, Sums>,
    externals: HashMap<String, Sums>,
}

/// A counterparty's key: its account id and '', or 0 and its name.
pub type CounterpartyKeyOwned = (i64, String);

impl WindowTotals {
    fn new((first, end): (i64, i64), days: &[Arc<DayRows>], top_max: usize) -> Self {
        let (kinds, counterparties) = totals(days, &Filters::default());
        let kinds = kinds.into_iter().map(|(name, sums)| (name.to_owned(), sums)).collect();
        let mut all: Vec<(CounterpartyKey<'_>, Sums)> = counterparties.into_iter().collect();
        all.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        let rest_max = all.get(top_max).map_or(0, |(_, sums)| sums.count);
        let top = all.iter().take(top_max).map(|((id, key), sums)| ((*id, (*key).to_owned()), *sums)).collect();
        let mut accounts = FxHashMap::default();
        accounts.reserve(all.len());
        let mut externals = HashMap::new();
        for ((id, key), sums) in all {
            match id {
                0 => externals.insert(key.to_owned(), sums),
                _ => accounts.insert(id, sums),
            };
        }
        WindowTotals { first, end, kinds, top, rest_max, accounts, externals }
    }

    /// The sums of a counterparty over the run (None: no entry).
    pub fn of(&self, (id, key): CounterpartyKey<'_>) -> Option<Sums> {
        match id {
            0 => self.externals.get(key).copied(),
            _ => self.accounts.get(&id).copied(),
        }
    }

    fn size(&self) -> usize {
        self.accounts.len() + self.externals.len()
    }
}

/// Some of the accounts, by id.
type Shard = RwLock<HashMap<AccountId, Arc<AccountDays>>>;

/// The closed days of busy accounts, per process (see the module's doc).
pub struct ClosedDays {
    shards: Box<[Shard]>,
    rows: AtomicUsize,
    max_rows: usize,
    uses: AtomicU64,
}

/// A read of closed days: where from and whether ClickHouse may fill what is missing.
#[derive(Clone, Copy)]
pub struct ClosedRead<'a> {
    pub days: &'a ClosedDays,
    /// The first day not closed ([`closed_end`]).
    pub end: i64,
    /// ClickHouse holds every entry of the closed days asked (see the module's doc).
    pub may_fill: bool,
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct FetchedRow {
    day_number: u32,
    kind: String,
    direction_code: i8,
    counterparty_id: i64,
    counterparty_key: String,
    entries: u64,
    amount: i64,
}

/// Every counterparty's totals by day, kind and direction of an account's days. Binds:
/// account, first day, end day (exclusive).
const DAY_ROWS: &str = "SELECT toUInt32(day) AS day_number, kind, toInt8(direction) AS direction_code, counterparty_id,
            counterparty_key, sum(entries) AS entries, sum(amount) AS amount
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     GROUP BY day, kind, direction, counterparty_id, counterparty_key";

/// A day (since the epoch) as ClickHouse's `toDate` reads it.
pub fn date_text(day: i64) -> String {
    (chrono::NaiveDate::default() + chrono::Days::new(u64::try_from(day.max(0)).unwrap_or(0)))
        .format("%Y-%m-%d")
        .to_string()
}

impl ClosedDays {
    pub fn new(max_rows: usize) -> Self {
        ClosedDays {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            rows: AtomicUsize::new(0),
            max_rows,
            uses: AtomicU64::new(0),
        }
    }

    /// Rows kept, over every account.
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    fn shard(&self, account_id: AccountId) -> &Shard {
        &self.shards[account_id.get().rem_euclid(SHARDS as i64) as usize]
    }

    fn account(&self, account_id: AccountId, create: bool) -> Option<Arc<AccountDays>> {
        let shard = self.shard(account_id);
        let found = shard.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&account_id).cloned();
        let account = match found {
            Some(account) => account,
            None if create => {
                let mut accounts = shard.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                Arc::clone(accounts.entry(account_id).or_default())
            }
            None => return None,
        };
        account.last_use.store(self.uses.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(account)
    }

    /// The rows of the days `first..end` of the account, in day order: from memory, the missing
    /// ones read from ClickHouse when `may_fill` (None when some are missing and it is not).
    pub async fn read(
        &self,
        clickhouse: &ClickHouse,
        account_id: AccountId,
        (first, end): (i64, i64),
        may_fill: bool,
    ) -> anyhow::Result<Option<Vec<Arc<DayRows>>>> {
        if self.max_rows == 0 || first >= end {
            return Ok(None);
        }
        let Some(account) = self.account(account_id, may_fill) else {
            return Ok(None);
        };
        let (mut found, missing) = {
            let days = account.days.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let found: BTreeMap<i64, Arc<DayRows>> = days.range(first..end).map(|(d, r)| (*d, Arc::clone(r))).collect();
            let missing: Vec<i64> = (first..end).filter(|day| !found.contains_key(day)).collect();
            (found, missing)
        };
        if let (Some(&low), Some(&high)) = (missing.first(), missing.last()) {
            if !may_fill {
                return Ok(None);
            }
            let mut fetched = fetch(clickhouse, account_id, (low, high + 1)).await?;
            let fetched: BTreeMap<i64, Arc<DayRows>> =
                missing.iter().map(|day| (*day, Arc::new(fetched.remove(day).unwrap_or_default()))).collect();
            self.keep(&account, &fetched, end);
            found.extend(fetched);
        }
        Ok(Some(found.into_values().collect()))
    }

    /// Keeps `fetched` days of `account` (unless they alone would take over half the room),
    /// then makes room.
    fn keep(&self, account: &AccountDays, fetched: &BTreeMap<i64, Arc<DayRows>>, end: i64) {
        let added: usize = fetched.values().map(|day| day.len()).sum();
        if added > self.max_rows / 2 {
            return;
        }
        {
            let mut days = account.days.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let old: Vec<i64> = days.range(..end - KEPT_DAYS).map(|(day, _)| *day).collect();
            let mut removed: usize = old.iter().filter_map(|day| days.remove(day)).map(|rows| rows.len()).sum();
            for (day, rows) in fetched {
                // Another request may have filled the day meanwhile: the same rows, counted once.
                removed += days.insert(*day, Arc::clone(rows)).map_or(0, |previous| previous.len());
            }
            self.count_rows(account, added, removed);
        }
        self.make_room();
    }

    fn count_rows(&self, account: &AccountDays, added: usize, removed: usize) {
        let update = |rows: usize| Some((rows + added).saturating_sub(removed));
        let _ = account.rows.fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
        let _ = self.rows.fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// The totals of the days `first..end` of the account without filters, summed once: as
    /// [`ClosedDays::read`] reads the days, None when it does. `top_max`: the counterparties
    /// listed by their counts.
    pub async fn window(
        &self,
        clickhouse: &ClickHouse,
        account_id: AccountId,
        (first, end): (i64, i64),
        may_fill: bool,
        top_max: usize,
    ) -> anyhow::Result<Option<Arc<WindowTotals>>> {
        if let Some(account) = self.account(account_id, false) {
            let windows = account.windows.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(window) = windows.iter().find(|window| (window.first, window.end) == (first, end)) {
                return Ok(Some(Arc::clone(window)));
            }
        }
        let Some(days) = self.read(clickhouse, account_id, (first, end), may_fill).await? else {
            return Ok(None);
        };
        let window = Arc::new(WindowTotals::new((first, end), &days, top_max));
        if let Some(account) = self.account(account_id, false) {
            let mut windows = account.windows.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut removed = 0;
            windows.retain(|kept| {
                let stays = (kept.first, kept.end) != (first, end);
                removed += if stays { 0 } else { kept.size() };
                stays
            });
            if windows.len() >= WINDOWS_MAX {
                removed += windows.remove(0).size();
            }
            windows.push(Arc::clone(&window));
            self.count_rows(&account, window.size(), removed);
        }
        self.make_room();
        Ok(Some(window))
    }

    /// Forgets the accounts used least recently until the rows kept are at most 90% of
    /// `max_rows` (nothing when they are within it). The count of rows kept is taken afresh
    /// from the accounts meanwhile (a fill of an account forgotten while it read counts no more).
    fn make_room(&self) {
        if self.rows() <= self.max_rows {
            return;
        }
        let mut accounts: Vec<(u64, AccountId)> = Vec::new();
        let mut total = 0;
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (id, account) in shard.iter() {
                accounts.push((account.last_use.load(Ordering::Relaxed), *id));
                total += account.rows.load(Ordering::Relaxed);
            }
        }
        accounts.sort_unstable();
        let goal = self.max_rows / 10 * 9;
        for (_, id) in accounts {
            if total <= goal {
                break;
            }
            if let Some(account) = self.shard(id).write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id) {
                total = total.saturating_sub(account.rows.load(Ordering::Relaxed));
            }
        }
        self.rows.store(total, Ordering::Relaxed);
    }
}

/// The account's rows of the days `first..end` from ClickHouse, by day.
async fn fetch(
    clickhouse: &ClickHouse,
    account_id: AccountId,
    (first, end): (i64, i64),
) -> anyhow::Result<HashMap<i64, DayRows>> {
    let rows = clickhouse
        .query(DAY_ROWS)
        .with_setting("max_threads", "1")
        .bind(account_id)
        .bind(date_text(first))
        .bind(date_text(end))
        .fetch_all::<FetchedRow>()
        .await?;
    let mut days: HashMap<i64, DayRows> = HashMap::new();
    for row in rows {
        days.entry(i64::from(row.day_number)).or_default().push(row);
    }
    Ok(days)
}

/// Money in and out and entries, of a kind or a counterparty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub in_total: i64,
    pub out_total: i64,
    pub count: u64,
}

impl Sums {
    fn add(&mut self, row: &DayRow<'_>) {
        if row.direction == DIRECTION_IN {
            self.in_total += row.amount;
        } else {
            self.out_total += row.amount;
        }
        self.count += row.entries;
    }
}

/// A counterparty's key: its account id and '', or 0 and its name.
pub type CounterpartyKey<'a> = (i64, &'a str);

/// What [`totals`] sums: by kind, and by counterparty.
pub type DayTotals<'a> = (BTreeMap<&'a str, Sums>, FxHashMap<CounterpartyKey<'a>, Sums>);

/// The totals by kind and by counterparty of the rows of `days` that `filters` admit.
pub fn totals<'a>(days: &'a [Arc<DayRows>], filters: &Filters) -> DayTotals<'a> {
    let direction = match filters.direction {
        Some("in") => Some(DIRECTION_IN),
        Some(_) => Some(DIRECTION_OUT),
        None => None,
    };
    let rows: usize = days.iter().map(|day| day.len()).sum();
    let mut kinds: BTreeMap<&str, Sums> = BTreeMap::new();
    let mut counterparties: FxHashMap<CounterpartyKey<'a>, Sums> = FxHashMap::default();
    counterparties.reserve(rows);
    for day in days {
        day.each(|row| {
            let admitted = direction.is_none_or(|direction| row.direction == direction)
                && filters.kind.is_none_or(|kind| row.kind == kind)
                && filters.counterparty_account_id.is_none_or(|id| row.counterparty_id == id);
            if admitted {
                kinds.entry(row.kind).or_default().add(&row);
                counterparties.entry((row.counterparty_id, row.counterparty_key)).or_default().add(&row);
            }
        });
    }
    (kinds, counterparties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_of(rows: usize, kind: &str) -> Arc<DayRows> {
        let mut day = DayRows::default();
        for i in 0..rows {
            day.push(FetchedRow {
                day_number: 0,
                kind: kind.to_owned(),
                direction_code: if i % 2 == 0 { DIRECTION_IN } else { DIRECTION_OUT },
                counterparty_id: if i % 3 == 0 { 0 } else { i as i64 },
                counterparty_key: if i % 3 == 0 { format!("external{}", i % 2) } else { String::new() },
                entries: 1,
                amount: 10,
            });
        }
        Arc::new(day)
    }

    fn keep_days(days: &ClosedDays, account: i64, rows: usize) {
        let account = days.account(AccountId::new(account), true).unwrap();
        let fetched: BTreeMap<i64, Arc<DayRows>> =
            [(100, day_of(rows, "transfer")), (101, day_of(rows, "charge"))].into();
        days.keep(&account, &fetched, 102);
    }

    #[test]
    fn the_least_recently_used_accounts_go_when_the_rows_pass_the_bound() {
        let days = ClosedDays::new(100);
        keep_days(&days, 1, 20);
        keep_days(&days, 2, 20);
        assert_eq!(days.rows(), 80);
        // Account 1 is used again: account 2 is now the least recent, and goes first.
        assert!(days.account(AccountId::new(1), false).is_some());
        keep_days(&days, 3, 20);
        assert!(days.rows() <= 90, "{}", days.rows());
        assert!(days.account(AccountId::new(2), false).is_none());
        assert!(days.account(AccountId::new(1), false).is_some());
        assert!(days.account(AccountId::new(3), false).is_some());
        // Days that alone would take over half the room are not kept.
        keep_days(&days, 4, 30);
        assert!(days.account(AccountId::new(4), false).is_some_and(|a| a.days.read().unwrap().is_empty()));
        // Filling a day kept already counts its rows once.
        let before = days.rows();
        keep_days(&days, 3, 20);
        assert_eq!(days.rows(), before);
    }

    #[test]
    fn totals_sum_the_rows_the_filters_admit() {
        let kept = [day_of(6, "transfer"), day_of(6, "charge")];
        let (kinds, counterparties) = totals(&kept, &Filters::default());
        assert_eq!(kinds["transfer"], Sums { in_total: 30, out_total: 30, count: 6 });
        assert_eq!(counterparties[&(0, "external0")], Sums { in_total: 20, out_total: 0, count: 2 });
        assert_eq!(counterparties[&(1, "")], Sums { in_total: 0, out_total: 20, count: 2 });
        let filters = Filters { direction: Some("in"), kind: Some("charge"), counterparty_account_id: Some(2) };
        let (kinds, counterparties) = totals(&kept, &filters);
        assert_eq!(kinds.len(), 1);
        assert_eq!(kinds["charge"], Sums { in_total: 10, out_total: 0, count: 1 });
        assert_eq!(counterparties.len(), 1);
        let hour = SETTLE_US;
        assert!(closed_end(DAY_US * 3 + hour, None) == 3 && closed_end(DAY_US * 3 + hour - 1, None) == 2);
        assert_eq!(closed_end(DAY_US * 3 + 5 * hour, Some(DAY_US * 3 - 1)), 2);
        assert_eq!(closed_end(DAY_US * 3 + 5 * hour, Some(DAY_US * 3)), 3);
    }
}
