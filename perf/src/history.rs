//! The history benchmark: naive (PostgreSQL, OFFSET, count) vs tuned (ClickHouse, keyset
//! cursor) statement queries over HTTP, on a database seeded by `minipay seed` (a year of
//! entries, 100 k accounts, one hot account with 5% of all entries and a few heavy ones with
//! 2% each).
//!
//! For random ordinary accounts, the hot account and the heavy accounts, one request at a
//! time, naive and tuned interleaved: the first page, a deep page 90% of the way into the
//! account's pages (naive: `page=k`, OFFSET k × limit; tuned: the page at the cursor reached by
//! following `next_cursor` over the k × limit entries before it, the walk itself not timed)
//! and a one-month summary. Each pair is also checked to return the same entries (or totals).
//!
//! Beside the routes, each store's own tuned page query is timed from here on the same page:
//! the PostgreSQL keyset query (the statement of the `postgres` source) and the ClickHouse
//! keyset query (a window sized from the cursor's density hint, or 3 days, then the rest of
//! the range if the page is short). Two more rows filter the hot account: a deep page of its
//! outgoing entries, and the first page of one of its rare counterparties.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use crate::server::Server;
use crate::write::{database_url_for, recreate_database};

/// What `minipay seed` gives every seeded user.
const SEED_PASSWORD: &str = "seeded password";
const SEED_PREFIX: &str = "seed";
/// Page size of the (untimed) walk to a deep cursor: the largest the API allows.
const WALK_PAGE_MAX: u64 = 200;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Statement entries to seed.
    #[arg(long, default_value_t = 10_000_000)]
    pub entries: u64,
    /// Seeded users (one main account each; the first is the hot account).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Percentage of all entries on the hot account.
    #[arg(long, default_value_t = 5)]
    pub hot_percent: u32,
    /// Heavy accounts besides the hot one, each with --heavy-percent of all entries.
    #[arg(long, default_value_t = 4)]
    pub heavy_accounts: u32,
    /// Percentage of all entries on each heavy account.
    #[arg(long, default_value_t = 2)]
    pub heavy_percent: u32,
    /// Keep the bench database when it already holds a complete seed of --entries entries
    /// with --heavy-accounts heavy accounts.
    #[arg(long)]
    pub reuse_seed: bool,
    /// PostgreSQL and ClickHouse database of the benchmark.
    #[arg(long, default_value = "minipay_history_bench")]
    pub database: String,
    /// Random ordinary accounts measured.
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Measurements of each query per ordinary account.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Measurements of each query on the hot account.
    #[arg(long, default_value_t = 30)]
    pub hot_samples: usize,
    /// Measurements of each query per heavy account.
    #[arg(long, default_value_t = 10)]
    pub heavy_rounds: usize,
    /// The deep page, in percent of the way from an account's first page to its last.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub deep_percent: u64,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Run against the ClickHouse cluster named by MINIPAY_CLICKHOUSE_CLUSTER and
    /// MINIPAY_CLICKHOUSE_SHARD_URLS (perf/run-history --cluster starts one of two shards):
    /// minipay shards the statements by account, and each page query timed here goes to the
    /// account's shard.
    #[arg(long)]
    pub cluster: bool,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run perf/run-history, which starts the services"))
}

fn minipay_binary() -> String {
    std::env::var("MINIPAY_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/minipay").to_owned())
}

/// The ClickHouse servers holding the statements: the shards of the cluster with `--cluster`,
/// else the one server of CLICKHOUSE_URL.
fn clickhouse_urls(cluster: bool) -> anyhow::Result<Vec<String>> {
    let named = std::env::var("MINIPAY_CLICKHOUSE_CLUSTER").unwrap_or_default();
    if !cluster {
        anyhow::ensure!(named.is_empty(), "MINIPAY_CLICKHOUSE_CLUSTER is set: pass --cluster, or unset it");
        return Ok(vec![env("CLICKHOUSE_URL")?]);
    }
    anyhow::ensure!(!named.is_empty(), "--cluster needs MINIPAY_CLICKHOUSE_CLUSTER: run perf/run-history --cluster");
    let urls = env("MINIPAY_CLICKHOUSE_SHARD_URLS")?;
    Ok(urls.split(',').map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect())
}

/// The shard of `account_id` among `urls` (as minipay and the `Distributed` tables shard).
fn shard_url(urls: &[String], account_id: i64) -> &str {
    &urls[account_id.rem_euclid(urls.len() as i64) as usize]
}

async fn clickhouse_query(clickhouse_url: &str, sql: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new().post(clickhouse_url).body(sql.to_owned()).send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "ClickHouse: {sql}: {status}: {text}");
    Ok(text)
}

fn heavy_pattern() -> String {
    format!("{SEED_PREFIX}heavy%")
}

/// Whether the bench database holds a finished seed of `entries` entries in both stores, with
/// `heavy_accounts` heavy accounts.
async fn seeded(
    bench_url: &str,
    clickhouse_urls: &[String],
    database: &str,
    entries: u64,
    heavy_accounts: u32,
) -> bool {
    let Ok((client, connection)) = tokio_postgres::connect(bench_url, tokio_postgres::NoTls).await else {
        return false;
    };
    tokio::spawn(connection);
    let pg: Option<i64> =
        client.query_one("SELECT count(*) FROM statement_entries", &[]).await.ok().map(|row| row.get(0));
    let heavy: Option<i64> = client
        .query_one("SELECT count(*) FROM users WHERE name LIKE $1", &[&heavy_pattern()])
        .await
        .ok()
        .map(|row| row.get(0));
    let mut ch = Some(0u64);
    for url in clickhouse_urls {
        let count = clickhouse_query(url, &format!("SELECT count() FROM {database}.statement_entries")).await.ok();
        let count: Option<u64> = count.and_then(|text| text.trim().parse().ok());
        ch = ch.zip(count).map(|(sum, count)| sum + count);
    }
    pg == Some(entries as i64) && ch == Some(entries) && heavy == Some(i64::from(heavy_accounts))
}

async fn run_minipay(arguments: &[String], bench_url: &str, database: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(minipay_binary())
        .args(arguments)
        .env("DATABASE_URL", bench_url)
        .env("CLICKHOUSE_DATABASE", database)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {} (run cargo build --release first)", minipay_binary()))?;
    anyhow::ensure!(status.success(), "minipay {} failed: {status}", arguments.join(" "));
    Ok(())
}

pub struct BenchAccount {
    pub id: i64,
    pub token: String,
    /// Page filters of every page read, as query parameters (`&direction=out`), or empty.
    pub filter: String,
    /// The account's entries (naive `total`).
    pub total: u64,
    /// The deep page index used for this account, and the cursor that reaches it.
    pub deep_page: u64,
    pub deep_cursor: Option<String>,
}

impl BenchAccount {
    fn new(id: i64, token: String) -> Self {
        BenchAccount { id, token, filter: String::new(), total: 0, deep_page: 0, deep_cursor: None }
    }
}

#[derive(Default)]
pub struct Samples {
    pub naive_ms: Vec<f64>,
    pub tuned_ms: Vec<f64>,
    /// The stores' own tuned page queries, timed from the benchmark (pages only).
    pub pg_ms: Vec<f64>,
    pub ch_ms: Vec<f64>,
}

pub fn percentile(samples: &[f64], percentile: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 - 1.0) * percentile).round() as usize]
}

struct Bench {
    client: reqwest::Client,
    base: String,
    limit: u64,
    summary_from: String,
    summary_to: String,
    mismatches: Vec<String>,
    fallbacks: u64,
    pg: tokio_postgres::Client,
    /// One per shard (one in all without a cluster).
    clickhouse_urls: Vec<String>,
    database: String,
}

/// `(at_us, id, gap_us)` of a `next_cursor` (`h{at_us}.{id}[.{gap_us}]`).
fn decode_cursor(text: &str) -> Option<(i64, i64, Option<i64>)> {
    let mut parts = text.strip_prefix('h')?.split('.');
    let at_us = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    Some((at_us, id, parts.next().and_then(|gap| gap.parse().ok())))
}

/// The filter values of a `filter` query suffix: direction and counterparty account.
fn filter_values(filter: &str) -> (Option<String>, Option<i64>) {
    let value = |name: &str| filter.split('&').find_map(|part| part.strip_prefix(name)).map(str::to_owned);
    (value("direction="), value("counterparty_account_id=").and_then(|id| id.parse().ok()))
}

impl Bench {
    /// The PostgreSQL keyset page query (as the `postgres` source runs it, over the year the
    /// route shows: a reused seed ages while runs repeat); returns its ids.
    async fn pg_page(&self, account: &BenchAccount, cursor: Option<&str>) -> anyhow::Result<(Vec<i64>, f64)> {
        let (direction, counterparty) = filter_values(&account.filter);
        let (at, id) = match cursor.and_then(decode_cursor) {
            Some((at_us, id, _)) => (
                chrono::DateTime::from_timestamp_micros(at_us)
                    .context("cursor time")?
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
                id,
            ),
            None => ("9999-12-31T00:00:00Z".to_owned(), i64::MAX),
        };
        let started = Instant::now();
        let rows = self
            .pg
            .query(
                "SELECT id, account_id, at, direction, amount, balance_after, kind, counterparty_account_id,
                        counterparty_name, transfer_id, memo, counterparty_user_name
                 FROM statement_entries
                 WHERE account_id = $1 AND ($2::text IS NULL OR direction = $2)
                   AND ($3::bigint IS NULL OR counterparty_account_id = $3)
                   AND (at, id) < ($4::text::timestamptz, $5) AND at >= now() - interval '12 months'
                 ORDER BY at DESC, id DESC LIMIT $6",
                &[&account.id, &direction, &counterparty, &at, &id, &(self.limit as i64 + 1)],
            )
            .await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        Ok((rows.iter().take(self.limit as usize).map(|row| row.get(0)).collect(), elapsed))
    }

    /// The ClickHouse keyset page query: a first window (from the cursor's density hint, or 3
    /// days), then the rest of the year if the page is short, as the server's first windows.
    async fn ch_page(&self, account: &BenchAccount, cursor: Option<&str>) -> anyhow::Result<(usize, f64)> {
        let (direction, counterparty) = filter_values(&account.filter);
        let mut filters = String::new();
        if let Some(direction) = direction {
            filters.push_str(&format!(" AND direction = '{direction}'"));
        }
        if let Some(counterparty) = counterparty {
            filters.push_str(&format!(" AND counterparty_account_id = {counterparty}"));
        }
        let wanted = self.limit as i64 + 1;
        let (high, id, gap) = match cursor.and_then(decode_cursor) {
            Some((at_us, id, gap)) => (at_us + 1, id, gap),
            None => (Utc::now().timestamp_micros() + 1, i64::MAX, None),
        };
        let first = gap.map_or(3 * 86_400_000_000, |gap| (gap * wanted * 4).max(60_000_000));
        // The year the route shows.
        let oldest = Utc::now().checked_sub_months(chrono::Months::new(12)).map_or(0, |at| at.timestamp_micros());
        let year_ago = (high - 366 * 86_400_000_000).max(oldest);
        let started = Instant::now();
        let mut found = 0;
        // Both windows within the year (a sparse account's first window may reach past it).
        let split = (high - first).max(year_ago);
        for (low, top) in [(split, high), (year_ago, split)] {
            let sql = format!(
                "SELECT entry_id, at_us, direction, amount, balance_after, kind, counterparty_account_id,
                        counterparty_name, transfer_id, memo, counterparty_user_name
                 FROM {}.statement_entries
                 PREWHERE account_id = {} AND at >= toDateTime({}) AND at <= toDateTime({})
                   AND at_us >= {low} AND at_us < {top} AND (at_us < {top} - 1 OR entry_id < {id})
                 WHERE 1{filters}
                 ORDER BY at_us DESC, entry_id DESC LIMIT 1 BY entry_id LIMIT {} FORMAT JSONEachRow",
                self.database,
                account.id,
                low.div_euclid(1_000_000).max(0),
                (top - 1).div_euclid(1_000_000),
                wanted - found as i64
            );
            found += clickhouse_query(shard_url(&self.clickhouse_urls, account.id), &sql).await?.lines().count();
            if found as i64 >= wanted {
                break;
            }
        }
        Ok((found.min(self.limit as usize), started.elapsed().as_secs_f64() * 1000.0))
    }

    /// Times both stores' own queries for one page, checking PostgreSQL's against the route's.
    async fn stores(&mut self, account: &BenchAccount, cursor: Option<&str>, route: &Value, samples: &mut Samples) {
        let ids = route["entries"].as_array().map(|entries| entries.iter().filter_map(|e| e["id"].as_i64()).collect());
        match self.pg_page(account, cursor).await {
            Ok((pg_ids, ms)) => {
                samples.pg_ms.push(ms);
                self.check("PostgreSQL keyset page", account, Some(pg_ids) == ids);
            }
            Err(error) => self.check(&format!("PostgreSQL keyset page: {error}"), account, false),
        }
        match self.ch_page(account, cursor).await {
            Ok((found, ms)) => {
                samples.ch_ms.push(ms);
                self.check("ClickHouse page size", account, Some(found) == ids.as_ref().map(Vec::len));
            }
            Err(error) => self.check(&format!("ClickHouse page: {error}"), account, false),
        }
    }

    /// GETs a history URL of the account; returns the body and the milliseconds it took.
    async fn get(&mut self, account: &BenchAccount, path_and_query: &str) -> anyhow::Result<(Value, f64)> {
        let url = format!("{}/v1/accounts/{}/{path_and_query}", self.base, account.id);
        let started = Instant::now();
        let response = self.client.get(&url).bearer_auth(&account.token).send().await?;
        let status = response.status();
        let source =
            response.headers().get("x-history-source").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
        let body = response.bytes().await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {}", String::from_utf8_lossy(&body));
        if source == "postgres-fallback" {
            self.fallbacks += 1;
        }
        Ok((serde_json::from_slice(&body)?, elapsed))
    }

    /// Same entries, field for field, in the same order (and at least one).
    fn same_entries(naive: &Value, tuned: &Value) -> bool {
        naive["entries"].as_array().is_some_and(|entries| !entries.is_empty()) && naive["entries"] == tuned["entries"]
    }

    fn check(&mut self, what: &str, account: &BenchAccount, same: bool) {
        if !same && self.mismatches.len() < 10 {
            self.mismatches.push(format!("{what}: naive and tuned differ on account {}", account.id));
        }
    }

    /// Picks the account's deep page (`deep_percent` of the way to its last page, rounded) and walks
    /// the tuned route to it, following `next_cursor` over every entry before it.
    async fn prepare(&mut self, account: &mut BenchAccount, deep_percent: u64) -> anyhow::Result<()> {
        let filter = account.filter.clone();
        let (first, _) = self.get(account, &format!("history/naive?limit={}&page=0{filter}", self.limit)).await?;
        account.total = first["total"].as_u64().unwrap_or(0);
        let last_page = account.total.saturating_sub(1) / self.limit;
        account.deep_page = (last_page * deep_percent + 50) / 100;
        // A cursor stands for a position in the account's entries, whatever the page size
        // that reached it: walk with the largest pages.
        let mut before = account.deep_page * self.limit;
        let mut cursor: Option<String> = None;
        while before > 0 {
            let step = before.min(WALK_PAGE_MAX);
            let query = match &cursor {
                Some(cursor) => format!("history?limit={step}&cursor={cursor}{filter}"),
                None => format!("history?limit={step}{filter}"),
            };
            let (page, _) = self.get(account, &query).await?;
            let found = page["entries"].as_array().map_or(0, Vec::len) as u64;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            anyhow::ensure!(
                found == step && cursor.is_some(),
                "account {} ran out of pages before page {}",
                account.id,
                account.deep_page
            );
            before -= step;
        }
        account.deep_cursor = cursor;
        Ok(())
    }

    /// One measurement of the first and the deep page on one account, with its filter: the
    /// routes, then each store's own query.
    async fn measure_pages(
        &mut self,
        account: &BenchAccount,
        first: &mut Samples,
        deep: &mut Samples,
    ) -> anyhow::Result<()> {
        let (limit, filter) = (self.limit, account.filter.as_str());
        let (naive, naive_ms) = self.get(account, &format!("history/naive?limit={limit}&page=0{filter}")).await?;
        let (tuned, tuned_ms) = self.get(account, &format!("history?limit={limit}{filter}")).await?;
        first.naive_ms.push(naive_ms);
        first.tuned_ms.push(tuned_ms);
        self.check("first page", account, Self::same_entries(&naive, &tuned));
        self.stores(account, None, &tuned, first).await;

        let (naive, naive_ms) =
            self.get(account, &format!("history/naive?limit={limit}&page={}{filter}", account.deep_page)).await?;
        let tuned_query = match &account.deep_cursor {
            Some(cursor) => format!("history?limit={limit}&cursor={cursor}{filter}"),
            None => format!("history?limit={limit}{filter}"),
        };
        let (tuned, tuned_ms) = self.get(account, &tuned_query).await?;
        deep.naive_ms.push(naive_ms);
        deep.tuned_ms.push(tuned_ms);
        self.check("deep page", account, Self::same_entries(&naive, &tuned));
        self.stores(account, account.deep_cursor.as_deref(), &tuned, deep).await;
        Ok(())
    }

    /// One measurement of each pair on one account.
    async fn measure(
        &mut self,
        account: &BenchAccount,
        first: &mut Samples,
        deep: &mut Samples,
        summary: &mut Samples,
    ) -> anyhow::Result<()> {
        self.measure_pages(account, first, deep).await?;
        let from = self.summary_from.clone();
        self.measure_summary(account, &from, summary).await
    }

    /// One naive and one tuned summary of the account from `from` to the benchmark's start,
    /// checked to be the same (totals, kinds and top counterparties with their names).
    async fn measure_summary(
        &mut self,
        account: &BenchAccount,
        from: &str,
        summary: &mut Samples,
    ) -> anyhow::Result<()> {
        let range = format!("from={from}&to={}", self.summary_to);
        let (naive, naive_ms) = self.get(account, &format!("history/summary/naive?{range}")).await?;
        let (tuned, tuned_ms) = self.get(account, &format!("history/summary?{range}")).await?;
        summary.naive_ms.push(naive_ms);
        summary.tuned_ms.push(tuned_ms);
        let same = ["in", "out", "by_kind", "top_counterparties"].iter().all(|field| naive[field] == tuned[field]);
        self.check("summary", account, same);
        Ok(())
    }
}

async fn log_in(client: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<String> {
    let session: Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&serde_json::json!({"name": name, "password": SEED_PASSWORD}))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("logging in as {name}"))?
        .json()
        .await?;
    Ok(session["token"].as_str().context("token")?.to_owned())
}

/// `p50 / p99` of the samples, or `–` when there are none.
fn p50_p99(samples: &[f64]) -> String {
    if samples.is_empty() {
        return "–".to_owned();
    }
    format!("{:.2} / {:.2}", percentile(samples, 0.5), percentile(samples, 0.99))
}

fn print_row(label: &str, accounts: usize, samples: &Samples) {
    let (naive_p50, naive_p99) = (percentile(&samples.naive_ms, 0.5), percentile(&samples.naive_ms, 0.99));
    let (tuned_p50, tuned_p99) = (percentile(&samples.tuned_ms, 0.5), percentile(&samples.tuned_ms, 0.99));
    println!(
        "| {label:<36} | {accounts:>8} | {:>7} | {naive_p50:>9.2} | {naive_p99:>9.2} | {tuned_p50:>9.2} | {tuned_p99:>9.2} | {:>8.2}x | {:>8.2}x | {:>15} | {:>15} |",
        samples.naive_ms.len(),
        naive_p50 / tuned_p50,
        naive_p99 / tuned_p99,
        p50_p99(&samples.pg_ms),
        p50_p99(&samples.ch_ms),
    );
}

/// Logs in as each `(name, account id)` row.
async fn bench_accounts(
    client: &reqwest::Client,
    base: &str,
    rows: &[tokio_postgres::Row],
) -> anyhow::Result<Vec<BenchAccount>> {
    let mut accounts = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        accounts.push(BenchAccount::new(row.get(1), log_in(client, base, &name).await?));
    }
    Ok(accounts)
}

fn describe_deep_pages(accounts: &[BenchAccount], limit: u64) -> String {
    accounts
        .iter()
        .map(|account| {
            format!(
                "account {} page {} of {} (OFFSET {}, {} entries)",
                account.id,
                account.deep_page,
                account.total.saturating_sub(1) / limit,
                account.deep_page * limit,
                account.total
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The hot and heavy accounts' rows (one unrecorded round first).
async fn measure_busy(
    bench: &mut Bench,
    hot: &BenchAccount,
    heavy_accounts: &[BenchAccount],
    options: &Options,
) -> anyhow::Result<Vec<(String, usize, Samples)>> {
    eprintln!(
        "[5/5] hot account: {} samples; heavy accounts: {} x {} rounds (one unrecorded round first)",
        options.hot_samples,
        heavy_accounts.len(),
        options.heavy_rounds
    );
    let mut discarded = (Samples::default(), Samples::default(), Samples::default());
    for account in std::iter::once(hot).chain(heavy_accounts) {
        bench.measure(account, &mut discarded.0, &mut discarded.1, &mut discarded.2).await?;
    }
    let (mut hot_first, mut hot_deep, mut hot_summary) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..options.hot_samples {
        bench.measure(hot, &mut hot_first, &mut hot_deep, &mut hot_summary).await?;
    }
    let (mut heavy_first, mut heavy_deep, mut heavy_summary) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..options.heavy_rounds {
        for account in heavy_accounts {
            bench.measure(account, &mut heavy_first, &mut heavy_deep, &mut heavy_summary).await?;
        }
    }
    let deep_label = format!("deep page ({}%)", options.deep_percent);
    let mut rows = vec![
        ("hot: first page".to_owned(), 1, hot_first),
        (format!("hot: {deep_label}"), 1, hot_deep),
        ("hot: summary, 30 days".to_owned(), 1, hot_summary),
    ];
    if !heavy_accounts.is_empty() {
        rows.push(("heavy: first page".to_owned(), heavy_accounts.len(), heavy_first));
        rows.push((format!("heavy: {deep_label}"), heavy_accounts.len(), heavy_deep));
        rows.push(("heavy: summary, 30 days".to_owned(), heavy_accounts.len(), heavy_summary));
    }
    Ok(rows)
}

/// Rows for filtered pages of the hot account: a deep page of its outgoing entries, and the
/// first page of one counterparty (a few entries among the account's hundreds of thousands);
/// then its whole-year summary.
async fn filtered_rows(
    bench: &mut Bench,
    hot: &BenchAccount,
    options: &Options,
) -> anyhow::Result<Vec<(String, usize, Samples)>> {
    let counterparty: i64 = bench
        .pg
        .query_one(
            "SELECT counterparty_account_id FROM statement_entries
             WHERE account_id = $1 AND counterparty_account_id IS NOT NULL ORDER BY at DESC, id DESC LIMIT 1",
            &[&hot.id],
        )
        .await?
        .get(0);
    let mut rows = Vec::new();
    for (label, filter) in [
        ("hot, direction=out", "&direction=out".to_owned()),
        ("hot, one counterparty", format!("&counterparty_account_id={counterparty}")),
    ] {
        let mut account = BenchAccount::new(hot.id, hot.token.clone());
        account.filter = filter;
        bench.prepare(&mut account, options.deep_percent).await?;
        let (mut first, mut deep) = (Samples::default(), Samples::default());
        bench.measure_pages(&account, &mut first, &mut deep).await?;
        let (mut first, mut deep) = (Samples::default(), Samples::default());
        for _ in 0..options.hot_samples {
            bench.measure_pages(&account, &mut first, &mut deep).await?;
        }
        rows.push((format!("{label}: first page"), 1, first));
        if account.deep_page > 0 {
            rows.push((format!("{label}: deep page ({}%)", options.deep_percent), 1, deep));
        }
        eprintln!("  {label}: {}", describe_deep_pages(std::slice::from_ref(&account), options.limit));
    }
    // A year of the hot account costs naive seconds: fewer samples. It starts an hour inside
    // the kept year: a range reaching past it is cut at the oldest instant kept, which moves
    // on between the naive and the tuned request.
    let year = (Utc::now() - chrono::Duration::days(365) + chrono::Duration::hours(1))
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut summary = Samples::default();
    bench.measure_summary(hot, &year, &mut Samples::default()).await?;
    for _ in 0..options.hot_samples.min(YEAR_SAMPLES_MAX) {
        bench.measure_summary(hot, &year, &mut summary).await?;
    }
    rows.push(("hot: summary, whole year".to_owned(), 1, summary));
    Ok(rows)
}

/// Samples of the hot account's whole-year summary at most.
const YEAR_SAMPLES_MAX: usize = 10;

/// The history benchmark's measurements, with its server still running on the seeded
/// database (for load on the same accounts) until `stop`.
pub struct HistoryOutcome {
    pub server: Server,
    pub limit: u64,
    pub hot_accounts: Vec<BenchAccount>,
    pub heavy_accounts: Vec<BenchAccount>,
    pub ordinary_accounts: Vec<BenchAccount>,
    /// (query, accounts measured, naive and tuned milliseconds), in table order.
    pub rows: Vec<(String, usize, Samples)>,
    pub walk_seconds: f64,
    pub fallbacks: u64,
    pub mismatches: Vec<String>,
    /// One server, or a cluster of how many shards.
    pub clickhouse: String,
}

impl HistoryOutcome {
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let outcome = measure(&options).await?;
    print(&options, &outcome);
    outcome.stop().await;
    Ok(())
}

/// Recreates and seeds the bench database, unless `--reuse-seed` finds a matching seed there.
async fn seed_if_needed(
    options: &Options,
    admin_url: &str,
    bench_url: &str,
    clickhouse_urls: &[String],
) -> anyhow::Result<()> {
    let database = options.database.as_str();
    if options.reuse_seed && seeded(bench_url, clickhouse_urls, database, options.entries, options.heavy_accounts).await
    {
        eprintln!(
            "[1/5] reusing the seed in {database} (minipay migrate: what a newer build adds, such as a backfill)"
        );
        run_minipay(&["migrate".to_owned()], bench_url, database).await?;
    } else {
        if options.reuse_seed {
            eprintln!("[1/5] no matching seed of {} entries in {database}: seeding again", options.entries);
        }
        eprintln!("[1/5] recreating {database} and seeding (minipay migrate, minipay seed)");
        recreate_database(admin_url, &clickhouse_urls[0], database).await?;
        for url in &clickhouse_urls[1..] {
            clickhouse_query(url, &format!("DROP DATABASE IF EXISTS {database}")).await?;
        }
        run_minipay(&["migrate".to_owned()], bench_url, database).await?;
        let seed = [
            "seed".to_owned(),
            "--entries".to_owned(),
            options.entries.to_string(),
            "--users".to_owned(),
            options.users.to_string(),
            "--hot-percent".to_owned(),
            options.hot_percent.to_string(),
            "--heavy-accounts".to_owned(),
            options.heavy_accounts.to_string(),
            "--heavy-percent".to_owned(),
            options.heavy_percent.to_string(),
            "--prefix".to_owned(),
            SEED_PREFIX.to_owned(),
        ];
        let started = Instant::now();
        run_minipay(&seed, bench_url, database).await?;
        eprintln!("  seeded in {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Seeds (or reuses the seed), starts the server and measures naive vs tuned; the server keeps
/// running.
pub async fn measure(options: &Options) -> anyhow::Result<HistoryOutcome> {
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_urls = clickhouse_urls(options.cluster)?;
    let database = options.database.as_str();
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--database must be a plain identifier"
    );
    anyhow::ensure!(options.accounts >= 1 && options.limit >= 1, "--accounts and --limit must be positive");
    let bench_url = database_url_for(&admin_url, database);
    eprintln!(
        "history benchmark: {} entries, {} users (hot {}%, {} heavy x {}%), database {database}",
        options.entries, options.users, options.hot_percent, options.heavy_accounts, options.heavy_percent
    );

    eprintln!("  ClickHouse: {}", describe_clickhouse(&clickhouse_urls));
    seed_if_needed(options, &admin_url, &bench_url, &clickhouse_urls).await?;

    eprintln!("[2/5] starting minipay (forwarder off: seeded entries are in both stores) and logging in");
    let server = Server::start(&bench_url, database, &[("MINIPAY_FORWARDER", "off".to_owned())]).await?;
    let (pg, connection) = tokio_postgres::connect(&bench_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let hot_name = format!("{SEED_PREFIX}hot");
    let main_account = "SELECT u.name, a.id FROM users u JOIN accounts a ON a.user_id = u.id AND a.kind = 'main'";
    let hot =
        pg.query_one(&format!("{main_account} WHERE u.name = $1"), &[&hot_name]).await.context("the hot account")?;
    let heavy = pg.query(&format!("{main_account} WHERE u.name LIKE $1 ORDER BY u.id"), &[&heavy_pattern()]).await?;
    let ordinary = pg
        .query(
            &format!("{main_account} WHERE u.name <> $1 AND u.name NOT LIKE $2 ORDER BY random() LIMIT $3"),
            &[&hot_name, &heavy_pattern(), &(options.accounts as i64)],
        )
        .await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let now = Utc::now();
    let mut bench = Bench {
        client: client.clone(),
        base: server.base.clone(),
        limit: options.limit,
        summary_from: (now - chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true),
        summary_to: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        mismatches: Vec::new(),
        fallbacks: 0,
        pg,
        clickhouse_urls: clickhouse_urls.clone(),
        database: database.to_owned(),
    };
    let mut hot_accounts = bench_accounts(&client, &server.base, std::slice::from_ref(&hot)).await?;
    let mut heavy_accounts = bench_accounts(&client, &server.base, &heavy).await?;
    let mut ordinary_accounts = bench_accounts(&client, &server.base, &ordinary).await?;

    eprintln!(
        "[3/5] walking the tuned route to each deep page ({}% of the way), {} entries a page",
        options.deep_percent, WALK_PAGE_MAX
    );
    let walk_started = Instant::now();
    for account in hot_accounts.iter_mut().chain(&mut heavy_accounts).chain(&mut ordinary_accounts) {
        bench.prepare(account, options.deep_percent).await?;
    }
    let walk_seconds = walk_started.elapsed().as_secs_f64();

    eprintln!("[4/5] ordinary accounts: {} accounts x {} rounds", ordinary_accounts.len(), options.rounds);
    let (mut first, mut deep, mut summary) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..options.rounds {
        for account in &ordinary_accounts {
            bench.measure(account, &mut first, &mut deep, &mut summary).await?;
        }
    }

    let busy = measure_busy(&mut bench, &hot_accounts[0], &heavy_accounts, options).await?;
    let deep_label = format!("deep page ({}%)", options.deep_percent);
    let mut rows = vec![
        ("ordinary: first page".to_owned(), ordinary_accounts.len(), first),
        (format!("ordinary: {deep_label}"), ordinary_accounts.len(), deep),
        ("ordinary: summary, 30 days".to_owned(), ordinary_accounts.len(), summary),
    ];
    rows.extend(busy);
    eprintln!(
        "  filtered pages of the hot account: {} samples each; its whole-year summary: {}",
        options.hot_samples,
        options.hot_samples.min(YEAR_SAMPLES_MAX)
    );
    rows.extend(filtered_rows(&mut bench, &hot_accounts[0], options).await?);
    Ok(HistoryOutcome {
        server,
        limit: options.limit,
        hot_accounts,
        heavy_accounts,
        ordinary_accounts,
        rows,
        walk_seconds,
        fallbacks: bench.fallbacks,
        mismatches: bench.mismatches,
        clickhouse: describe_clickhouse(&clickhouse_urls),
    })
}

fn describe_clickhouse(urls: &[String]) -> String {
    match urls.len() {
        1 => "one server".to_owned(),
        shards => format!("a cluster of {shards} shards, statements sharded by account"),
    }
}

fn print(options: &Options, outcome: &HistoryOutcome) {
    let HistoryOutcome { hot_accounts, heavy_accounts, ordinary_accounts, walk_seconds, .. } = outcome;
    let ordinary_mean_deep =
        ordinary_accounts.iter().map(|account| account.deep_page).sum::<u64>() as f64 / ordinary_accounts.len() as f64;
    let ordinary_mean_total =
        ordinary_accounts.iter().map(|account| account.total).sum::<u64>() as f64 / ordinary_accounts.len() as f64;
    println!();
    println!(
        "minipay history benchmark — {} entries, {} accounts, page size {}, one request at a time; ClickHouse: {}",
        options.entries, options.users, options.limit, outcome.clickhouse
    );
    println!();
    println!(
        "| {:<36} | {:>8} | {:>7} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>15} | {:>15} |",
        "query",
        "accounts",
        "samples",
        "naive p50",
        "naive p99",
        "tuned p50",
        "tuned p99",
        "p50 ratio",
        "p99 ratio",
        "pg keyset",
        "ClickHouse"
    );
    println!(
        "|{:-<38}|{:->10}|{:->9}|{:->11}|{:->11}|{:->11}|{:->11}|{:->11}|{:->11}|{:->17}|{:->17}|",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    for (label, accounts, samples) in &outcome.rows {
        print_row(label, *accounts, samples);
    }
    println!();
    println!("times in ms; ratio = naive / tuned (above 1: tuned is faster).");
    println!(
        "pg keyset, ClickHouse: p50 / p99 of each store's own tuned page query, timed from the benchmark (the route adds HTTP, the ownership check and the choice of store)."
    );
    println!(
        "deep page k = {}% of the way to the account's last page: naive page=k (OFFSET k*{}); tuned at the cursor reached by following next_cursor over the k*{} entries before it ({} a page, not timed; all walks took {:.1} s).",
        options.deep_percent, options.limit, options.limit, WALK_PAGE_MAX, walk_seconds
    );
    println!("  hot: {}", describe_deep_pages(hot_accounts, options.limit));
    if !heavy_accounts.is_empty() {
        println!("  heavy: {}", describe_deep_pages(heavy_accounts, options.limit));
    }
    println!("  ordinary: mean k {ordinary_mean_deep:.1}, mean {ordinary_mean_total:.1} entries per account");
    println!("tuned answers from the PostgreSQL fallback: {}", outcome.fallbacks);
    println!(
        "naive/tuned mismatches (entries compared field by field, summaries by totals): {}",
        outcome.mismatches.len()
    );
    for mismatch in &outcome.mismatches {
        println!("  {mismatch}");
    }
}
