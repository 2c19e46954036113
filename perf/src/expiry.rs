//! The pending-expiry benchmark: N pending transfers past their 72 hours, expired and refunded
//! by one run of the `pending-expiry` job, then the audit (ledger invariants, and PostgreSQL
//! vs ClickHouse once the forwarder has carried the refund entries over).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::server::{Server, ADMIN_TOKEN};
use crate::write::{database_url_for, recreate_database};

#[derive(clap::Args)]
pub struct Options {
    /// Pending transfers to expire.
    #[arg(long, default_value_t = 1_000_000)]
    pub transfers: i64,
    /// Users they are spread over (each sends and receives).
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    /// Extra server environment, NAME=VALUE (repeatable), e.g. RUST_LOG=info.
    #[arg(long = "server-env")]
    pub server_env: Vec<String>,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run perf/run-expiry, which starts the services"))
}

/// Users with funded main accounts, and pending transfers among them created 73 hours ago,
/// written the way the ledger writer would have: posted funds per account (from the system
/// `interest` account, so that no daily top-up counter is involved), a `pending`
/// ledger row per transfer, and the holds in the accounts' pending columns.
const SEED: &[&str] = &[
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

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.users >= 2 && options.transfers >= 1, "needs at least 2 users and 1 transfer");
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_url = env("CLICKHOUSE_URL")?;
    let bench_db = "minipay_expiry_bench";
    let bench_url = database_url_for(&admin_url, bench_db);
    eprintln!("expiry benchmark: {} pending transfers among {} users", options.transfers, options.users);
    recreate_database(&admin_url, &clickhouse_url, bench_db).await?;
    let extra: Vec<(&str, String)> = options
        .server_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name, value.to_owned()))
        .collect();

    // The server migrates the database and prepares the partitions.
    eprintln!("[1/4] starting minipay (migrations) on {bench_db}");
    let server = Server::start(&bench_url, bench_db, &extra).await?;
    let (db, connection) = tokio_postgres::connect(&bench_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    eprintln!("[2/4] seeding");
    let seed_started = Instant::now();
    for (step, statement) in SEED.iter().enumerate() {
        let sql = statement
            .replace("$USERS", &options.users.to_string())
            .replace("$TRANSFERS", &options.transfers.to_string());
        db.batch_execute(&sql).await.with_context(|| format!("seed step {}", step + 1))?;
        eprintln!("  seed step {}/{} done ({} s)", step + 1, SEED.len(), seed_started.elapsed().as_secs());
    }

    // The job runs as `minipay jobs run pending-expiry`, as an operator would run it, while
    // the server's forwarder carries the refund entries to ClickHouse.
    eprintln!("[3/4] minipay jobs run pending-expiry");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let job = {
        let run = tokio::process::Command::new(crate::server::binary())
            .args(["jobs", "run", "pending-expiry"])
            .env("DATABASE_URL", &bench_url)
            .env("CLICKHOUSE_DATABASE", bench_db)
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
                    break serde_json::from_slice::<Value>(&output.stdout)?;
                }
                _ = ticker.tick() => {
                    let left: i64 = db.query_one("SELECT count(*) FROM transfers WHERE status = 'pending'", &[]).await?.get(0);
                    eprintln!("  {} s: {} expired, {left} pending", started.elapsed().as_secs(), options.transfers - left);
                }
            }
        }
    };
    let elapsed = started.elapsed();
    let processed = job["processed"].as_i64().unwrap_or(0);

    eprintln!("[4/4] waiting for the forwarder, then the audit");
    let drained = Instant::now();
    loop {
        let left: i64 = db.query_one("SELECT count(*) FROM statement_outbox", &[]).await?.get(0);
        if left == 0 {
            break;
        }
        eprintln!("  outbox: {left} entries left ({} s)", drained.elapsed().as_secs());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let audit: Value =
        client.get(format!("{}/admin/audit", server.base)).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    server.stop().await;

    let seconds = elapsed.as_secs_f64();
    println!();
    println!("minipay pending-expiry benchmark — {} pending transfers, {} users", options.transfers, options.users);
    println!();
    println!("| {:<28} | {:>12} |", "measure", "value");
    println!("|{:-<30}|{:->14}|", "", "");
    println!("| {:<28} | {:>12} |", "transfers expired", processed);
    println!("| {:<28} | {:>12} |", "chunks (transactions)", job["chunks"]);
    println!("| {:<28} | {:>12.1} |", "job duration, s", seconds);
    println!("| {:<28} | {:>12.0} |", "transfers/s", processed as f64 / seconds);
    println!("| {:<28} | {:>12.2} |", "vs goal (60 s), x faster", 60.0 / seconds);
    println!("| {:<28} | {:>12.1} |", "forwarder drain after, s", drained.elapsed().as_secs_f64());
    println!("| {:<28} | {:>12} |", "audit ok", audit["ok"]);
    if audit["ok"] != Value::Bool(true) {
        println!("{audit:#}");
        anyhow::bail!("the audit failed");
    }
    anyhow::ensure!(processed == options.transfers, "expired {processed} of {} transfers", options.transfers);
    Ok(())
}
