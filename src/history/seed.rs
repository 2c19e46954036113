//! Bulk statement history for benchmarks (`minipay seed`): users with main accounts, and a
//! year of statement entries written to both stores at once — PostgreSQL through binary
//! `COPY`, ClickHouse through its bulk insert — bypassing the ledger writer and the outbox.
//!
//! Entries are history only: no money moves, account balance columns stay zero, so the
//! ledger invariants hold. Each entry is one side of a movement (a top-up from `external` or
//! a transfer with another seeded account); sides are not paired, and `transfer_id` is NULL.
//! `balance_after` is a running balance per account that never goes below zero (an outgoing
//! entry the balance could not pay becomes incoming). Entries are generated in time order, one
//! time slot each, so ids and times rise together, and every account's balances line up with
//! the order the history queries read in.
//!
//! One account (the user `{prefix}hot`) holds `hot_percent` % of all entries, and
//! `heavy_accounts` more (`{prefix}heavy1`, `{prefix}heavy2`, ...) `heavy_percent` % each:
//! accounts with hundreds of thousands of entries, whose deep pages are what OFFSET paging
//! punishes. The other accounts are drawn uniformly. Every seeded user has the password
//! [`SEED_PASSWORD`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::clickhouse::{shard_of, ClickHouse};
use super::entry::{ClickHouseEntry, DIRECTION_IN, DIRECTION_OUT};
use crate::domain::business_day::{first_of_month, first_of_next_month};
use crate::domain::ids::AccountId;
use crate::domain::names::Password;
use crate::domain::passwords::HashCost;
use crate::hashing::{Hashing, HashingLimits};
use crate::store::partitions;

/// The password of every seeded user (benchmarks log in with it).
pub const SEED_PASSWORD: &str = "seeded password";
/// Cheap argon2 for the one shared hash: logging in is not what the benchmarks measure.
const SEED_HASH_COST: HashCost = HashCost { memory_kib: 1024, iterations: 1 };
pub const USERS_MAX: u64 = 10_000_000;
pub const ENTRIES_MAX: u64 = 100_000_000;
pub const CHUNK_ROWS_MAX: usize = 1_000_000;
/// Chunks generated ahead of the slower writer: bounds memory to a few chunks.
const CHUNKS_IN_FLIGHT: usize = 2;
/// One ClickHouse insert (and one PostgreSQL COPY) covers at most this many rows, so a part
/// is big enough for ClickHouse and a failure loses little.
const ROWS_PER_STATEMENT_MAX: u64 = 1_000_000;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How far back the entries reach: one year, the retention period.
const HISTORY_DAYS: i64 = 365;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub users: u64,
    pub entries: u64,
    /// Percentage of all entries on the hot account.
    pub hot_percent: u32,
    /// Accounts besides the hot one that hold `heavy_percent` % of all entries each.
    pub heavy_accounts: u32,
    pub heavy_percent: u32,
    /// Seeded user names are `{prefix}hot` and `{prefix}{n}`.
    pub prefix: String,
    pub chunk_rows: usize,
    /// RNG seed, for repeatable data.
    pub rng_seed: u64,
}

#[derive(Debug)]
pub struct SeedReport {
    pub hot_account_id: i64,
    pub heavy_account_ids: Vec<i64>,
    pub accounts: u64,
    pub entries: u64,
    pub first_entry_id: i64,
    pub elapsed: Duration,
}

struct SeededAccount {
    id: i64,
    name: String,
    user_id: i64,
}

/// Seeds users, accounts and entries; `now` ends the year of history.
pub async fn run(
    pool: &PgPool,
    database_url: &str,
    clickhouse: &ClickHouse,
    options: &SeedOptions,
    now: DateTime<Utc>,
) -> anyhow::Result<SeedReport> {
    validate(options)?;
    let started = Instant::now();
    let start = now - chrono::Duration::days(HISTORY_DAYS);
    partitions::ensure_months(pool, &months_between(start.date_naive(), now.date_naive())).await?;

    let accounts = create_users(pool, options, start).await?;
    let hot_account_id = accounts[0].id;
    let heavy_account_ids: Vec<i64> =
        accounts[1..=options.heavy_accounts as usize].iter().map(|account| account.id).collect();
    eprintln!(
        "seed: {} users with main accounts (hot account {hot_account_id}, heavy accounts {heavy_account_ids:?})",
        accounts.len()
    );
    let first_entry_id = reserve_entry_ids(pool, options.entries).await?;
    let span = EntrySpan { first_entry_id, start, end: now };
    let entries = write_entries(database_url, clickhouse, options, accounts, span).await?;
    // Sets hint bits and the visibility map now, so the first benchmark run does not pay
    // for them on its reads; and gives the planner statistics.
    eprintln!("seed: VACUUM (ANALYZE) statement_entries");
    sqlx::raw_sql("VACUUM (ANALYZE) statement_entries").execute(pool).await?;
    Ok(SeedReport {
        hot_account_id,
        heavy_account_ids,
        accounts: options.users,
        entries,
        first_entry_id,
        elapsed: started.elapsed(),
    })
}

fn validate(options: &SeedOptions) -> anyhow::Result<()> {
    anyhow::ensure!((2..=USERS_MAX).contains(&options.users), "--users must be between 2 and {USERS_MAX}");
    anyhow::ensure!((1..=ENTRIES_MAX).contains(&options.entries), "--entries must be between 1 and {ENTRIES_MAX}");
    anyhow::ensure!(options.hot_percent < 100, "--hot-percent must be below 100");
    anyhow::ensure!(
        u64::from(options.heavy_accounts) + 2 <= options.users,
        "--heavy-accounts must leave the hot account and at least one ordinary account among --users"
    );
    anyhow::ensure!(
        options.hot_percent + options.heavy_accounts.saturating_mul(options.heavy_percent) < 100,
        "--hot-percent plus --heavy-accounts times --heavy-percent must be below 100"
    );
    anyhow::ensure!(
        options.heavy_accounts == 0 || options.heavy_percent > 0,
        "--heavy-percent must be positive when there are heavy accounts"
    );
    anyhow::ensure!(
        (1..=CHUNK_ROWS_MAX).contains(&options.chunk_rows),
        "--chunk-rows must be between 1 and {CHUNK_ROWS_MAX}"
    );
    anyhow::ensure!(
        !options.prefix.is_empty()
            && options.prefix.len() <= 32
            && options.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "--prefix must be 1..=32 ASCII letters, digits, '_' or '-'"
    );
    Ok(())
}

/// Where the generated entries go: ids from `first_entry_id`, times from `start` to `end`.
#[derive(Clone, Copy)]
struct EntrySpan {
    first_entry_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Generates the entries on a blocking thread and writes every chunk to both stores at once;
/// returns how many entries each store got.
async fn write_entries(
    database_url: &str,
    clickhouse: &ClickHouse,
    options: &SeedOptions,
    accounts: Vec<SeededAccount>,
    span: EntrySpan,
) -> anyhow::Result<u64> {
    let (pg_sender, pg_receiver) = mpsc::channel::<Arc<Vec<ClickHouseEntry>>>(CHUNKS_IN_FLIGHT);
    let (ch_sender, ch_receiver) = mpsc::channel::<Arc<Vec<ClickHouseEntry>>>(CHUNKS_IN_FLIGHT);
    let pg_rows = Arc::new(AtomicU64::new(0));
    let ch_rows = Arc::new(AtomicU64::new(0));

    let generator = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || generate(&options, &accounts, span, &pg_sender, &ch_sender))
    };
    let pg_writer = tokio::spawn(copy_to_postgres(database_url.to_owned(), pg_receiver, pg_rows.clone()));
    let ch_writer = tokio::spawn(insert_into_clickhouse(clickhouse.clone(), ch_receiver, ch_rows.clone()));
    let progress = tokio::spawn(report_progress(options.entries, pg_rows.clone(), ch_rows.clone(), Instant::now()));

    let generated = generator.await.context("seed generator panicked");
    let pg_result = pg_writer.await.context("PostgreSQL writer panicked");
    let ch_result = ch_writer.await.context("ClickHouse writer panicked");
    progress.abort();
    // A writer that failed closes its channel, which stops the generator: report the cause.
    pg_result??;
    ch_result??;
    generated??;
    let entries = pg_rows.load(Ordering::Relaxed);
    assert_eq!(entries, ch_rows.load(Ordering::Relaxed), "both stores got every entry");
    Ok(entries)
}

fn months_between(first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    let mut months = Vec::new();
    let mut month = first_of_month(first);
    while month <= last {
        months.push(month);
        month = first_of_next_month(month);
    }
    months
}

/// Inserts the users and their main accounts set-based; returns the accounts: hot first, then
/// the heavy ones, then the ordinary ones.
async fn create_users(
    pool: &PgPool,
    options: &SeedOptions,
    created_at: DateTime<Utc>,
) -> anyhow::Result<Vec<SeededAccount>> {
    let hot_name = format!("{}hot", options.prefix);
    let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE name = $1)")
        .bind(&hot_name)
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        !taken,
        "user {hot_name:?} exists: this database is already seeded (use a fresh database or another --prefix)"
    );
    let password = Password::parse(SEED_PASSWORD).map_err(|error| anyhow::anyhow!("seed password: {error}"))?;
    // One hash for everyone: hashing 100 k passwords would take longer than the seed itself.
    let hashing = Hashing::new(SEED_HASH_COST, HashingLimits { concurrency: 1, queue: 0 });
    let hash = hashing.admit()?.hash(password).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "WITH new_users AS (
             INSERT INTO users (name, password_hash, created_at)
             SELECT CASE WHEN g = 0 THEN $1 || 'hot' WHEN g <= $5 THEN $1 || 'heavy' || g ELSE $1 || (g - $5) END, $2, $3
             FROM generate_series(0, $4 - 1) AS g
             RETURNING id
         )
         INSERT INTO accounts (user_id, kind, opened_at)
         SELECT id, 'main', $3 FROM new_users",
    )
    .bind(&options.prefix)
    .bind(&hash)
    .bind(created_at)
    .bind(options.users as i64)
    .bind(i64::from(options.heavy_accounts))
    .execute(&mut *tx)
    .await
    .context("inserting seeded users and accounts")?;
    // The hash has a random salt, so it names exactly this run's users.
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT a.id, u.name, u.id FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'main'
         WHERE u.password_hash = $1
         ORDER BY u.name = $2 DESC, u.name LIKE $3 || 'heavy%' DESC, u.id",
    )
    .bind(&hash)
    .bind(&hot_name)
    .bind(&options.prefix)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // Their names' skeletons, which SQL cannot compute.
    crate::store::users::fill_name_skeletons(pool).await?;
    let heavy = options.heavy_accounts as usize;
    anyhow::ensure!(
        rows.len() as u64 == options.users
            && rows[0].1 == hot_name
            && (1..=heavy).all(|n| rows[n].1 == format!("{}heavy{n}", options.prefix)),
        "seeded users not found back"
    );
    Ok(rows.into_iter().map(|(id, name, user_id)| SeededAccount { id, name, user_id }).collect())
}

/// Takes `count` ids from `statement_entries_id_seq`; returns the first. The ledger writers
/// are held at their gate meanwhile, so no live entry takes an id inside the range.
async fn reserve_entry_ids(pool: &PgPool, count: u64) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await?;
    crate::store::tx::wait_at_ledger_gate(&mut tx).await?;
    let first: i64 = sqlx::query_scalar("SELECT nextval('statement_entries_id_seq')").fetch_one(&mut *tx).await?;
    sqlx::query("SELECT setval('statement_entries_id_seq', $1)")
        .bind(first + count as i64 - 1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(first)
}

const MEMOS: [&str; 6] = ["lunch", "dinner", "rent", "coffee", "taxi", "gift"];

/// Produces the entries in chunks, in time order, and hands each chunk to both writers.
fn generate(
    options: &SeedOptions,
    accounts: &[SeededAccount],
    span: EntrySpan,
    pg: &mpsc::Sender<Arc<Vec<ClickHouseEntry>>>,
    ch: &mpsc::Sender<Arc<Vec<ClickHouseEntry>>>,
) -> anyhow::Result<()> {
    let mut generator = EntryGenerator::new(options, accounts, span);
    let total = options.entries;
    let mut index: u64 = 0;
    while index < total {
        let rows = (total - index).min(options.chunk_rows as u64);
        let mut chunk = Vec::with_capacity(rows as usize);
        for _ in 0..rows {
            chunk.push(generator.entry(index));
            index += 1;
        }
        let chunk = Arc::new(chunk);
        if pg.blocking_send(chunk.clone()).is_err() || ch.blocking_send(chunk).is_err() {
            // A writer stopped: its own error says why.
            return Ok(());
        }
    }
    Ok(())
}

/// The random walk of the seeded entries: one seeded generator, the balances so far.
struct EntryGenerator<'a> {
    options: &'a SeedOptions,
    accounts: &'a [SeededAccount],
    first_entry_id: i64,
    rng: StdRng,
    /// Percentiles below `hot_percent` pick the hot account, those below this each a heavy
    /// account (`heavy_percent` apiece), the rest an ordinary one.
    heavy_end: u32,
    balances: Vec<i64>,
    start_us: i64,
    span_us: u128,
}

impl<'a> EntryGenerator<'a> {
    fn new(options: &'a SeedOptions, accounts: &'a [SeededAccount], span: EntrySpan) -> Self {
        let start_us = span.start.timestamp_micros();
        EntryGenerator {
            options,
            accounts,
            first_entry_id: span.first_entry_id,
            rng: StdRng::seed_from_u64(options.rng_seed),
            heavy_end: options.hot_percent + options.heavy_accounts * options.heavy_percent,
            balances: vec![0i64; accounts.len()],
            start_us,
            span_us: (span.end.timestamp_micros() - start_us).max(1) as u128,
        }
    }

    /// Entry `index` of `options.entries`.
    fn entry(&mut self, index: u64) -> ClickHouseEntry {
        let (options, accounts, total) = (self.options, self.accounts, self.options.entries);
        let rng = &mut self.rng;
        // Slot `index` of `total` equal slots: times never go backwards.
        let slot_start = self.start_us + (u128::from(index) * self.span_us / u128::from(total)) as i64;
        let slot_end = self.start_us + (u128::from(index + 1) * self.span_us / u128::from(total)) as i64;
        let at_us = if slot_end > slot_start { rng.gen_range(slot_start..slot_end) } else { slot_start };
        let percentile = rng.gen_range(0..100u32);
        let account = if percentile < options.hot_percent {
            0
        } else if percentile < self.heavy_end {
            1 + ((percentile - options.hot_percent) / options.heavy_percent) as usize
        } else {
            rng.gen_range(1 + options.heavy_accounts as usize..accounts.len())
        };
        let is_charge = rng.gen_bool(0.25);
        let amount: i64 = if is_charge { rng.gen_range(1..=100) * 10_000 } else { rng.gen_range(1..=50_000) * 10 };
        let balance = &mut self.balances[account];
        let direction =
            if !is_charge && rng.gen_bool(0.5) && *balance >= amount { DIRECTION_OUT } else { DIRECTION_IN };
        *balance += if direction == DIRECTION_IN { amount } else { -amount };
        debug_assert!(*balance >= 0);
        let (kind, counterparty_account_id, counterparty_name, counterparty_user_name) = if is_charge {
            ("charge", None, "external".to_owned(), None)
        } else {
            let mut other = rng.gen_range(0..accounts.len());
            if other == account {
                other = (other + 1) % accounts.len();
            }
            ("transfer", Some(accounts[other].id), accounts[other].name.clone(), Some(accounts[other].name.clone()))
        };
        let memo = if !is_charge && rng.gen_bool(0.1) {
            MEMOS[rng.gen_range(0..MEMOS.len())].to_owned()
        } else {
            String::new()
        };
        ClickHouseEntry {
            entry_id: (self.first_entry_id + index as i64) as u64,
            account_id: AccountId::new(accounts[account].id),
            at: (at_us / 1_000_000) as u32,
            at_us,
            direction,
            amount,
            balance_after: *balance,
            kind: kind.to_owned(),
            counterparty_account_id,
            counterparty_name,
            transfer_id: None,
            memo,
            counterparty_user_name,
            account_kind: "main".to_owned(),
            owner_user_id: accounts[account].user_id,
        }
    }
}

async fn copy_to_postgres(
    database_url: String,
    mut chunks: mpsc::Receiver<Arc<Vec<ClickHouseEntry>>>,
    written: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let (client, connection) =
        tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.context("seed: connecting for COPY")?;
    let connection = tokio::spawn(connection);
    let types = [
        Type::INT8,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
    ];
    let statement = "COPY statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                         counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name)
                     FROM STDIN BINARY";
    let mut chunk = chunks.recv().await;
    while chunk.is_some() {
        let sink = client.copy_in(statement).await.context("seed: starting COPY")?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        let mut in_statement = 0u64;
        while let Some(rows) = chunk.take() {
            for row in rows.iter() {
                let id = row.entry_id as i64;
                let at = DateTime::from_timestamp_micros(row.at_us).context("seed: time out of range")?;
                let direction = if row.direction == DIRECTION_IN { "in" } else { "out" };
                let memo = (!row.memo.is_empty()).then_some(row.memo.as_str());
                let values: [&(dyn ToSql + Sync); 12] = [
                    &id,
                    &row.account_id,
                    &at,
                    &direction,
                    &row.amount,
                    &row.balance_after,
                    &row.kind,
                    &row.counterparty_account_id,
                    &row.counterparty_name,
                    &row.transfer_id,
                    &memo,
                    &row.counterparty_user_name,
                ];
                writer.as_mut().write(&values).await.context("seed: COPY")?;
            }
            in_statement += rows.len() as u64;
            written.fetch_add(rows.len() as u64, Ordering::Relaxed);
            if in_statement >= ROWS_PER_STATEMENT_MAX {
                break;
            }
            chunk = chunks.recv().await;
        }
        writer.finish().await.context("seed: finishing COPY")?;
        if chunk.is_none() {
            chunk = chunks.recv().await;
        }
    }
    drop(client);
    connection.await??;
    Ok(())
}

/// The UTC month of a ClickHouse `at`: its partition.
fn month_of(at: u32) -> Option<(i32, u32)> {
    DateTime::from_timestamp(i64::from(at), 0).map(|at| (at.year(), at.month()))
}

/// Inserts the chunks; a statement never spans two months (partitions), so a month of up to
/// a million entries becomes one part, the layout background merges leave an older month in.
/// On a cluster each shard gets its accounts' entries, in statements of its own.
async fn insert_into_clickhouse(
    clickhouse: ClickHouse,
    mut chunks: mpsc::Receiver<Arc<Vec<ClickHouseEntry>>>,
    written: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let shards = clickhouse.shards();
    let mut statements: Vec<ShardStatement> = shards.iter().map(|_| ShardStatement::default()).collect();
    while let Some(rows) = chunks.recv().await {
        for row in rows.iter() {
            let index = shard_of(row.account_id.get(), shards.len());
            statements[index].write(&shards[index], row).await?;
        }
        // Counted once sent; the statement's `end` confirms them.
        written.fetch_add(rows.len() as u64, Ordering::Relaxed);
    }
    for statement in statements {
        statement.end().await?;
    }
    Ok(())
}

/// The insert statement open on one shard, with its row count and month.
#[derive(Default)]
struct ShardStatement {
    insert: Option<clickhouse::insert::Insert<ClickHouseEntry>>,
    rows: u64,
    month: Option<(i32, u32)>,
}

impl ShardStatement {
    async fn write(&mut self, shard: &ClickHouse, row: &ClickHouseEntry) -> anyhow::Result<()> {
        let month = month_of(row.at);
        if self.rows >= ROWS_PER_STATEMENT_MAX || month != self.month {
            if let Some(full) = self.insert.take() {
                full.end().await.context("seed: ClickHouse insert")?;
            }
            self.rows = 0;
            self.month = month;
        }
        if self.insert.is_none() {
            self.insert = Some(shard.client().insert::<ClickHouseEntry>("statement_entries").await?);
        }
        self.insert.as_mut().expect("an insert is open").write(row).await.context("seed: ClickHouse insert")?;
        self.rows += 1;
        Ok(())
    }

    async fn end(self) -> anyhow::Result<()> {
        if let Some(insert) = self.insert {
            insert.end().await.context("seed: ClickHouse insert")?;
        }
        Ok(())
    }
}

async fn report_progress(total: u64, pg: Arc<AtomicU64>, ch: Arc<AtomicU64>, started: Instant) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (pg, ch) = (pg.load(Ordering::Relaxed), ch.load(Ordering::Relaxed));
        let done = pg.min(ch);
        let millis = (started.elapsed().as_millis() as u64).max(1);
        eprintln!(
            "seed: {done}/{total} entries ({}%), {} rows/s; PostgreSQL {pg}, ClickHouse {ch}; {} s",
            done * 100 / total.max(1),
            done * 1000 / millis,
            millis / 1000,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_cover_the_year() {
        let months = months_between(
            NaiveDate::from_ymd_opt(2025, 11, 24).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        );
        assert_eq!(months.len(), 13);
        assert_eq!(months[0], NaiveDate::from_ymd_opt(2025, 11, 1).unwrap());
        assert_eq!(months[12], NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    }
}
