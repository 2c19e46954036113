//! Batch-job benchmarks: a bench database seeded straight in SQL with what the job works on,
//! one run of the job as an operator runs it (`minipay jobs run <name>`, progress every 5 s),
//! the forwarder left to carry the new statement entries to ClickHouse, then the audit.
//!
//! - `expiry`: N pending transfers past their 72 hours, expired and refunded.
//! - `interest`: N savings accounts paid one day of interest, or with `--gap-days`, every day of
//!   an outage that long (the run for the latest date catches each account up in one posting).
//! - `installments`: N fixed savings accounts, with empty main accounts, owed `--gap-days`
//!   installments each: every one taken through the ledger writer, topped up against its own
//!   date's limit.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::server::{Server, ADMIN_TOKEN};
use crate::write::{database_url_for, recreate_database};

#[derive(clap::Args)]
pub struct ExpiryOptions {
    /// Pending transfers to expire.
    #[arg(long, default_value_t = 1_000_000)]
    pub transfers: i64,
    /// Users they are spread over (each sends and receives).
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    /// Transfers per chunk (transaction), MINIPAY_JOBS_CHUNK_SIZE.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_size: usize,
}

#[derive(clap::Args)]
pub struct InterestOptions {
    /// Savings accounts to pay.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: i64,
    /// Users they belong to.
    #[arg(long, default_value_t = 100_000)]
    pub users: i64,
    /// Accounts per chunk (transaction), MINIPAY_JOBS_CHUNK_SIZE.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_size: usize,
    /// Days of interest each account is owed: 1 is a night's run; more is the catch-up after
    /// an outage of that many days (e.g. 400).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=3_650))]
    pub gap_days: i64,
    /// The bench database (PostgreSQL and ClickHouse), dropped and created again: give runs
    /// that may overlap on one server their own.
    #[arg(long, default_value = "minipay_interest_bench")]
    pub database: String,
}

#[derive(clap::Args)]
pub struct InstallmentOptions {
    /// Fixed savings accounts (10,000 KRW a day each).
    #[arg(long, default_value_t = 1_000)]
    pub accounts: i64,
    /// Users they belong to (each user's main account is empty: every installment tops up).
    #[arg(long, default_value_t = 1_000)]
    pub users: i64,
    /// Accounts per chunk, MINIPAY_JOBS_CHUNK_SIZE.
    #[arg(long, default_value_t = 1_000)]
    pub chunk_size: usize,
    /// Installments each account is owed: 1 is a morning's run; more is the catch-up after an
    /// outage of that many days.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=3_650))]
    pub gap_days: i64,
    /// The bench database (PostgreSQL and ClickHouse), dropped and created again.
    #[arg(long, default_value = "minipay_installments_bench")]
    pub database: String,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run perf/run-expiry, which starts the services"))
}

/// Users with funded main accounts, and pending transfers among them created 73 hours ago,
/// written the way the ledger writer would have: posted funds per account (from the system
/// `interest` account, so that no daily top-up counter is involved), a `pending`
/// ledger row per transfer, and the holds in the accounts' pending columns.
const EXPIRY_SEED: &[&str] = &[
    "INSERT INTO users (id, name, password_hash, transfer_mode, created_at)
     SELECT 100000 + u, 'expiry' || u, 'x', 'confirm', now() - interval '80 hours' FROM generate_series(1, $USERS) u",
    "INSERT INTO accounts (id, user_id, kind, opened_at)
     SELECT 100000 + u, 100000 + u, 'main', now() - interval '80 hours' FROM generate_series(1, $USERS) u",
    "CREATE TEMP TABLE seeded AS
     SELECT t AS n, 100000 + 1 + (t % $USERS) AS sender,
            100000 + 1 + ((t + 1 + (t / $USERS) % ($USERS - 1)) % $USERS) AS receiver,
            1000 + (t % 97) * 10 AS amount
       FROM generate_series(1, $TRANSFERS) t",
    "INSERT INTO transfers (id, from_account_id, to_account_id, from_user_id, to_user_id, amount, status, created_at, expires_at)
     SELECT n, sender, receiver, sender, receiver, amount, 'pending', now() - interval '73 hours', now() - interval '1 hour'
       FROM seeded",
    "SELECT setval('transfers_id_seq', $TRANSFERS)",
    "INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags, transfer_id)
     SELECT nextval('ledger_transfers_id_seq'), now() - interval '73 hours', sender, receiver, amount, 'pending', 'pending', n
       FROM seeded",
    "INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags)
     SELECT nextval('ledger_transfers_id_seq'), now() - interval '80 hours', 2, id, 10000000, 'interest', 'posted'
       FROM accounts WHERE kind = 'main'",
    "UPDATE accounts SET credits_posted = 10000000 WHERE kind = 'main'",
    "UPDATE accounts a SET debits_pending = h.debit, credits_pending = h.credit
       FROM (SELECT account_id, sum(debit) AS debit, sum(credit) AS credit FROM (
                 SELECT sender AS account_id, amount AS debit, 0 AS credit FROM seeded
                 UNION ALL SELECT receiver, 0, amount FROM seeded) holds GROUP BY account_id) h
      WHERE a.id = h.account_id",
    "UPDATE accounts SET debits_posted = (SELECT count(*) * 10000000 FROM accounts WHERE kind = 'main') WHERE id = 2",
    "ANALYZE",
];

/// Users with a main account each and savings accounts spread over them (free and fixed in
/// turn), opened days ago, each holding a principal (posted from the system `interest`
/// account, so no daily top-up counter is involved), and paid up to $GAP days before the last
/// day now due: $GAP days of interest (1: one date) are owed by every account.
const INTEREST_SEED: &[&str] = &[
    "INSERT INTO users (id, name, password_hash, created_at)
     SELECT 100000 + u, 'saver' || u, 'x', now() - interval '$OPENED days' FROM generate_series(1, $USERS) u",
    "INSERT INTO accounts (id, user_id, kind, opened_at)
     SELECT 100000 + u, 100000 + u, 'main', now() - interval '$OPENED days' FROM generate_series(1, $USERS) u",
    "INSERT INTO accounts (id, user_id, kind, product, installment_amount, interest_rate_bp, opened_at,
                           credits_posted, interest_through)
     SELECT 10000000 + n, 100000 + 1 + n % $USERS, 'savings',
            CASE WHEN n % 2 = 0 THEN 'free' ELSE 'fixed' END,
            CASE WHEN n % 2 = 0 THEN NULL ELSE 10000 END,
            CASE WHEN n % 2 = 0 THEN 300 ELSE 500 END,
            now() - interval '$OPENED days', 10000 + (n % 1000) * 1000,
            ((now() AT TIME ZONE 'Asia/Seoul') - interval '4 hours')::date - 1 - $GAP
       FROM generate_series(1, $ACCOUNTS) n",
    // The month of the deposits may be older than the partitions the server prepared.
    "DO $body$
     DECLARE month date := date_trunc('month', (now() - interval '$OPENED days') AT TIME ZONE 'UTC')::date;
     BEGIN
         EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF ledger_transfers FOR VALUES FROM (%L) TO (%L)',
                        'ledger_transfers_' || to_char(month, '\"y\"YYYY\"m\"MM'), month || ' 00:00:00+00',
                        (month + interval '1 month')::date || ' 00:00:00+00');
     END $body$",
    "INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags)
     SELECT nextval('ledger_transfers_id_seq'), now() - interval '$OPENED days', 2, id, credits_posted, 'deposit', 'posted'
       FROM accounts WHERE kind = 'savings'",
    "UPDATE accounts SET debits_posted = (SELECT sum(credits_posted) FROM accounts WHERE kind = 'savings') WHERE id = 2",
    "ANALYZE",
];

/// Users with empty main accounts and fixed savings accounts spread over them (10,000 KRW a
/// day, nothing held), opened days ago, with installments done up to $GAP dates before the
/// latest one now due and interest paid up to date: $GAP installments are owed by every
/// account, each needing a top-up of 10,000 against its own date's limit.
const INSTALLMENT_SEED: &[&str] = &[
    "INSERT INTO users (id, name, password_hash, created_at)
     SELECT 100000 + u, 'saver' || u, 'x', now() - interval '$OPENED days' FROM generate_series(1, $USERS) u",
    "INSERT INTO accounts (id, user_id, kind, opened_at)
     SELECT 100000 + u, 100000 + u, 'main', now() - interval '$OPENED days' FROM generate_series(1, $USERS) u",
    "INSERT INTO accounts (id, user_id, kind, product, installment_amount, interest_rate_bp, opened_at,
                           installment_through, interest_through)
     SELECT 10000000 + n, 100000 + 1 + n % $USERS, 'savings', 'fixed', 10000, 500, now() - interval '$OPENED days',
            ((now() AT TIME ZONE 'Asia/Seoul') - interval '8 hours')::date - $GAP,
            ((now() AT TIME ZONE 'Asia/Seoul') - interval '4 hours')::date - 1
       FROM generate_series(1, $ACCOUNTS) n",
    "ANALYZE",
];

/// One job benchmark: what to seed, which job to run, how to count what is left.
struct JobBench {
    title: String,
    database: String,
    seed: Vec<String>,
    job: &'static str,
    /// Work still to do, for the progress lines.
    left_sql: &'static str,
    unit: &'static str,
    expected: i64,
    chunk_size: usize,
}

pub async fn expiry(options: ExpiryOptions) -> anyhow::Result<()> {
    anyhow::ensure!(options.users >= 2 && options.transfers >= 1, "needs at least 2 users and 1 transfer");
    let substitute = |sql: &&str| {
        sql.replace("$USERS", &options.users.to_string()).replace("$TRANSFERS", &options.transfers.to_string())
    };
    run(JobBench {
        title: format!("pending-expiry benchmark — {} pending transfers, {} users", options.transfers, options.users),
        database: "minipay_expiry_bench".to_owned(),
        seed: EXPIRY_SEED.iter().map(substitute).collect(),
        job: "pending-expiry",
        left_sql: "SELECT count(*) FROM transfers WHERE status = 'pending'",
        unit: "transfers",
        expected: options.transfers,
        chunk_size: options.chunk_size,
    })
    .await
}

/// The interest seed's statements for `accounts` savings accounts of `users` users, each owed
/// `gap_days` days of interest.
pub(crate) fn interest_seed(accounts: i64, users: i64, gap_days: i64) -> Vec<String> {
    INTEREST_SEED
        .iter()
        .map(|sql| {
            sql.replace("$USERS", &users.to_string())
                .replace("$ACCOUNTS", &accounts.to_string())
                .replace("$GAP", &gap_days.to_string())
                .replace("$OPENED", &(gap_days + 4).to_string())
        })
        .collect()
}

pub async fn installments(options: InstallmentOptions) -> anyhow::Result<()> {
    anyhow::ensure!(options.users >= 1 && options.accounts >= 1, "needs at least 1 user and 1 account");
    let seed = INSTALLMENT_SEED
        .iter()
        .map(|sql| {
            sql.replace("$USERS", &options.users.to_string())
                .replace("$ACCOUNTS", &options.accounts.to_string())
                .replace("$GAP", &options.gap_days.to_string())
                .replace("$OPENED", &(options.gap_days + 4).to_string())
        })
        .collect();
    run(JobBench {
        title: format!(
            "installments benchmark — {} fixed savings accounts, {} users, {} installments owed each",
            options.accounts, options.users, options.gap_days
        ),
        database: options.database,
        seed,
        job: "installments",
        left_sql: "SELECT COALESCE(sum(((now() AT TIME ZONE 'Asia/Seoul') - interval '8 hours')::date \
                   - installment_through), 0)::int8 FROM accounts WHERE kind = 'savings' AND product = 'fixed'",
        unit: "installments",
        expected: options.accounts * options.gap_days,
        chunk_size: options.chunk_size,
    })
    .await
}

pub async fn interest(options: InterestOptions) -> anyhow::Result<()> {
    anyhow::ensure!(options.users >= 1 && options.accounts >= 1, "needs at least 1 user and 1 account");
    let owed = match options.gap_days {
        1 => "one date".to_owned(),
        days => format!("{days} days owed (an outage's catch-up)"),
    };
    run(JobBench {
        title: format!("interest benchmark — {} savings accounts, {} users, {owed}", options.accounts, options.users),
        database: options.database,
        seed: interest_seed(options.accounts, options.users, options.gap_days),
        job: "interest",
        left_sql: "SELECT count(*) FROM accounts WHERE kind = 'savings' AND interest_through < \
                   ((now() AT TIME ZONE 'Asia/Seoul') - interval '4 hours')::date - 1",
        unit: "accounts",
        expected: options.accounts,
        chunk_size: options.chunk_size,
    })
    .await
}

async fn run(bench: JobBench) -> anyhow::Result<()> {
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_url = env("CLICKHOUSE_URL")?;
    let bench_db = bench.database.as_str();
    anyhow::ensure!(
        !bench_db.is_empty() && bench_db.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "the bench database name must be lower-case letters, digits and underscores: {bench_db}"
    );
    let bench_url = database_url_for(&admin_url, bench_db);
    eprintln!("{}", bench.title);
    recreate_database(&admin_url, &clickhouse_url, bench_db).await?;

    // The server migrates the database, prepares the partitions and runs the forwarder.
    eprintln!("[1/4] starting minipay (migrations) on {bench_db}");
    // Its scheduler stays off: it would mark the dates done before the seed is in.
    let server = Server::start(&bench_url, bench_db, &[("MINIPAY_SCHEDULER", "off".to_owned())]).await?;
    let (db, connection) = tokio_postgres::connect(&bench_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    eprintln!("[2/4] seeding");
    let seed_started = Instant::now();
    for (step, sql) in bench.seed.iter().enumerate() {
        db.batch_execute(sql).await.with_context(|| format!("seed step {}", step + 1))?;
        eprintln!("  seed step {}/{} done ({} s)", step + 1, bench.seed.len(), seed_started.elapsed().as_secs());
    }

    eprintln!("[3/4] minipay jobs run {}", bench.job);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let job = run_job(&bench, &bench_url, &db, started).await?;
    let elapsed = started.elapsed();
    let processed = job["processed"].as_i64().unwrap_or(0);

    eprintln!("[4/4] waiting for the forwarder, then the audit");
    let drained = Instant::now();
    loop {
        let left: i64 = db
            .query_one("SELECT coalesce(sum(cardinality(entry_ids)), 0)::int8 FROM statement_outbox", &[])
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        eprintln!("  outbox: {left} entries left ({} s)", drained.elapsed().as_secs());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let audit: Value =
        client.get(format!("{}/admin/audit", server.base)).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    server.stop().await;

    print_table(&bench, &job, elapsed.as_secs_f64(), drained.elapsed().as_secs_f64(), &audit);
    if audit["ok"] != Value::Bool(true) {
        println!("{audit:#}");
        anyhow::bail!("the audit failed");
    }
    anyhow::ensure!(processed == bench.expected, "processed {processed} of {} {}", bench.expected, bench.unit);
    Ok(())
}

/// Runs `minipay jobs run <job>` against the bench database, reporting progress every 5 s;
/// returns its answer.
async fn run_job(
    bench: &JobBench,
    bench_url: &str,
    db: &tokio_postgres::Client,
    started: Instant,
) -> anyhow::Result<Value> {
    let run = tokio::process::Command::new(crate::server::binary())
        .args(["jobs", "run", bench.job])
        .env("DATABASE_URL", bench_url)
        .env("CLICKHOUSE_DATABASE", &bench.database)
        .env("MINIPAY_JOBS_CHUNK_SIZE", bench.chunk_size.to_string())
        .stderr(std::process::Stdio::inherit())
        .output();
    tokio::pin!(run);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        tokio::select! {
            output = &mut run => {
                let output = output?;
                anyhow::ensure!(output.status.success(), "the job failed: {}", output.status);
                return Ok(serde_json::from_slice::<Value>(&output.stdout)?);
            }
            _ = ticker.tick() => {
                let left: i64 = db.query_one(bench.left_sql, &[]).await?.get(0);
                eprintln!("  {} s: {} {} done, {left} left", started.elapsed().as_secs(), bench.expected - left, bench.unit);
            }
        }
    }
}

/// The benchmark's result table.
fn print_table(bench: &JobBench, job: &Value, seconds: f64, drain_seconds: f64, audit: &Value) {
    let processed = job["processed"].as_i64().unwrap_or(0);
    println!();
    println!("minipay {}", bench.title);
    println!();
    println!("| {:<28} | {:>12} |", "measure", "value");
    println!("|{:-<30}|{:->14}|", "", "");
    println!("| {:<28} | {:>12} |", format!("{} processed", bench.unit), processed);
    let chunks: i64 =
        job["dates"].as_array().map(|dates| dates.iter().filter_map(|d| d["chunks"].as_i64()).sum()).unwrap_or(0);
    println!("| {:<28} | {:>12} |", "chunk size", bench.chunk_size);
    println!("| {:<28} | {:>12} |", "chunks (transactions)", chunks);
    println!("| {:<28} | {:>12.1} |", "job duration, s", seconds);
    println!("| {:<28} | {:>12.0} |", format!("{}/s", bench.unit), processed as f64 / seconds);
    if let (Some(taken), Some(missed)) = (job["taken"].as_i64(), job["missed"].as_i64()) {
        println!("| {:<28} | {:>12} |", "installments taken", taken);
        println!("| {:<28} | {:>12} |", "installments missed", missed);
        println!("| {:<28} | {:>12} |", "topped up, KRW", job["auto_charged_krw"]);
    }
    if let Some(days) = job["account_days"].as_i64() {
        println!("| {:<28} | {:>12} |", "account-days paid", days);
        println!("| {:<28} | {:>12} |", "interest posted, KRW", job["posted_krw"]);
    }
    println!("| {:<28} | {:>12.2} |", "vs goal (60 s), x faster", 60.0 / seconds);
    println!("| {:<28} | {:>12.1} |", "forwarder drain after, s", drain_seconds);
    println!("| {:<28} | {:>12} |", "audit ok", audit["ok"]);
}
