//! The write benchmark: POST /v1/transfers over HTTP with 100 concurrent clients, random
//! pairs ("cold") and 100 senders to one receiver ("hot"), against pgbench running a
//! hand-written transfer transaction on the same PostgreSQL, in the same run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};

use crate::load::{self, LoadReport};
use crate::pgbench::{self, PgbenchResult};
use crate::server::{Server, ADMIN_TOKEN};

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Concurrent clients, for pgbench and for HTTP.
    #[arg(long, default_value_t = 100)]
    pub clients: u32,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 15)]
    pub seconds: u32,
    /// Unmeasured seconds before each HTTP phase.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u32,
    /// Users for the cold (random pairs) phase.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Rows of the pgbench accounts table.
    #[arg(long, default_value_t = 10_000)]
    pub pgbench_accounts: u32,
    /// Send an Idempotency-Key with every transfer, as careful clients do.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Run only one HTTP phase: cold or hot (the other reports nothing).
    #[arg(long)]
    pub only: Option<String>,
    /// Extra server environment, NAME=value (repeatable), e.g. MINIPAY_LEDGER_WRITERS=4.
    #[arg(long = "server-env")]
    pub server_env: Vec<String>,
}

pub(crate) struct BenchUser {
    pub id: i64,
    pub name: String,
    pub token: String,
    pub main_account_id: i64,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run perf/run-write, which starts the services"))
}

/// Every benchmark user's password.
pub(crate) const PASSWORD: &str = "benchmark password";

/// What each benchmark user is charged at sign-up: the whole daily limit.
const FUNDING: i64 = 3_000_000;

pub(crate) fn database_url_for(base: &str, name: &str) -> String {
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => base.to_owned(),
    }
}

/// A fresh benchmark database in both stores: entry ids start again at 1, so entries left in
/// ClickHouse by an earlier run would be counted twice (the audit catches that).
pub(crate) async fn recreate_database(admin_url: &str, clickhouse_url: &str, name: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    reqwest::Client::new()
        .post(clickhouse_url)
        .body(format!("DROP DATABASE IF EXISTS {name}"))
        .send()
        .await?
        .error_for_status()
        .context("dropping the ClickHouse benchmark database")?;
    Ok(())
}

pub(crate) async fn create_users(
    client: &reqwest::Client,
    base: &str,
    count: usize,
    prefix: &str,
    funding: i64,
) -> anyhow::Result<Vec<BenchUser>> {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let users: Vec<anyhow::Result<BenchUser>> = futures::stream::iter(0..count)
        .map(|index| {
            let client = client.clone();
            let done = done.clone();
            async move {
                let name = format!("{prefix}{index}");
                let credentials = json!({"name": name, "password": PASSWORD});
                let user: Value = client
                    .post(format!("{base}/v1/users"))
                    .json(&credentials)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let session: Value = client
                    .post(format!("{base}/v1/sessions"))
                    .json(&credentials)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let token = session["token"].as_str().context("token")?.to_owned();
                let main_account_id = user["main_account_id"].as_i64().context("main_account_id")?;
                client
                    .post(format!("{base}/v1/accounts/{main_account_id}/charges"))
                    .bearer_auth(&token)
                    .json(&json!({"amount": funding}))
                    .send()
                    .await?
                    .error_for_status()?;
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if finished % 250 == 0 || finished == count {
                    eprintln!("  {prefix}: {finished}/{count} users created and funded");
                }
                let id = user["id"].as_i64().context("id")?;
                Ok(BenchUser { id, name, token, main_account_id })
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    users.into_iter().collect()
}

async fn transfer_load(
    client: &reqwest::Client,
    base: &str,
    options: &Options,
    label: &str,
    senders: Arc<Vec<BenchUser>>,
    receivers: Arc<Vec<BenchUser>>,
    one_sender_per_client: bool,
) -> LoadReport {
    let skipped = options.only.as_deref().is_some_and(|only| only != label);
    let (warmup, seconds) = if skipped { (0, 0) } else { (options.warmup_seconds, options.seconds) };
    let url = format!("{base}/v1/transfers");
    let client = client.clone();
    let keys = options.idempotency_keys;
    let run_id: u64 = rand::thread_rng().gen();
    load::run(
        options.clients as usize,
        Duration::from_secs(u64::from(warmup)),
        Duration::from_secs(u64::from(seconds)),
        label,
        move |worker, sequence| {
            let (from, to, amount) = {
                let mut rng = rand::thread_rng();
                let from = if one_sender_per_client { worker % senders.len() } else { rng.gen_range(0..senders.len()) };
                let mut to = rng.gen_range(0..receivers.len());
                if Arc::ptr_eq(&senders, &receivers) && to == from {
                    to = (to + 1) % receivers.len();
                }
                (from, to, rng.gen_range(1..=100))
            };
            let mut request = client
                .post(&url)
                .bearer_auth(&senders[from].token)
                .json(&json!({"to_account_id": receivers[to].main_account_id, "amount": amount}));
            if keys {
                request = request.header("Idempotency-Key", format!("{run_id:x}-{worker}-{sequence}"));
            }
            async move {
                let response = request.send().await.map_err(|error| error.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|error| error.to_string())?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                }
            }
            .boxed()
        },
    )
    .await
}

fn print_row(label: &str, tps: f64, p50: f64, p99: f64, errors: u64, baseline: f64) {
    println!("| {label:<34} | {tps:>11.0} | {p50:>8.2} | {p99:>8.2} | {errors:>6} | {:>6.2}x |", tps / baseline);
}

/// What one write benchmark measured.
pub struct WriteOutcome {
    pub pg_cold: PgbenchResult,
    pub pg_hot: PgbenchResult,
    pub cold: LoadReport,
    pub hot: LoadReport,
    pub audit: Value,
    /// The server's /metrics text at the end.
    pub metrics: String,
}

impl WriteOutcome {
    pub fn audit_ok(&self) -> bool {
        self.audit["ok"] == json!(true)
    }

    /// A counter or gauge of the server's metrics, as text ("?" when absent).
    pub fn metric(&self, name: &str) -> String {
        self.metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().last())
            .unwrap_or("?")
            .to_owned()
    }

    /// One line on the ledger writer's batches.
    pub fn ledger_batches(&self) -> String {
        format!(
            "ledger batches: {} committed, {} commands, mean size {:.1}, max {}, retries {}",
            self.metric("minipay_ledger_batches_total"),
            self.metric("minipay_ledger_commands_total"),
            self.metric("minipay_ledger_batch_size_sum").parse::<f64>().unwrap_or(0.0)
                / self.metric("minipay_ledger_batch_size_count").parse::<f64>().unwrap_or(1.0),
            self.metric("minipay_ledger_batch_size_max"),
            self.metric("minipay_ledger_batch_retries_total"),
        )
    }
}

/// The pgbench baseline and the HTTP transfers, cold and hot, on a fresh `minipay_bench`.
pub async fn measure(options: &Options) -> anyhow::Result<WriteOutcome> {
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_url = env("CLICKHOUSE_URL")?;
    let bench_db = "minipay_bench";
    let bench_url = database_url_for(&admin_url, bench_db);
    eprintln!("write benchmark: {} clients, {} s per phase, database {bench_db}", options.clients, options.seconds);
    recreate_database(&admin_url, &clickhouse_url, bench_db).await?;

    eprintln!("[1/4] pgbench baseline: hand-written transfer transaction (cold and hot)");
    pgbench::setup(&bench_url, options.pgbench_accounts).await?;
    let pg_cold: PgbenchResult =
        pgbench::run(&bench_url, false, options.pgbench_accounts, options.clients, options.seconds).await?;
    eprintln!("  pgbench cold: {:.0} tps", pg_cold.tps);
    let pg_hot: PgbenchResult =
        pgbench::run(&bench_url, true, options.pgbench_accounts, options.clients, options.seconds).await?;
    eprintln!("  pgbench hot: {:.0} tps", pg_hot.tps);

    eprintln!("[2/4] starting minipay and creating {} + {} users", options.users, options.clients + 1);
    let extra: Vec<(&str, String)> = options
        .server_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name, value.to_owned()))
        .collect();
    anyhow::ensure!(matches!(options.only.as_deref(), None | Some("cold") | Some("hot")), "--only takes cold or hot");
    let server = Server::start(&bench_url, bench_db, &extra).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients as usize * 2).build()?;
    let cold_users = Arc::new(create_users(&client, &server.base, options.users, "cold", FUNDING).await?);
    let hot_senders = Arc::new(create_users(&client, &server.base, options.clients as usize, "hot", FUNDING).await?);
    let hot_receiver = Arc::new(create_users(&client, &server.base, 1, "receiver", FUNDING).await?);

    eprintln!("[3/4] HTTP cold: {} clients, random pairs among {} users", options.clients, options.users);
    let cold =
        transfer_load(&client, &server.base, options, "cold", cold_users.clone(), cold_users.clone(), false).await;
    eprintln!("[3/4] HTTP hot: {} senders to one receiver", options.clients);
    let hot =
        transfer_load(&client, &server.base, options, "hot", hot_senders.clone(), hot_receiver.clone(), true).await;

    eprintln!("[4/4] audit and server metrics");
    let audit: Value =
        client.get(format!("{}/admin/audit", server.base)).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    let metrics = client.get(format!("{}/metrics", server.base)).send().await?.text().await?;
    server.stop().await;
    Ok(WriteOutcome { pg_cold, pg_hot, cold, hot, audit, metrics })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let outcome = measure(&options).await?;
    let WriteOutcome { pg_cold, pg_hot, cold, hot, audit, .. } = &outcome;
    println!();
    println!(
        "minipay write benchmark — {} clients, {} s per phase{}",
        options.clients,
        options.seconds,
        if options.idempotency_keys { ", with Idempotency-Key" } else { "" }
    );
    println!();
    println!(
        "| {:<34} | {:>11} | {:>8} | {:>8} | {:>6} | {:>7} |",
        "workload", "transfers/s", "p50 ms", "p99 ms", "errors", "vs (a)"
    );
    println!("|{:-<36}|{:->13}|{:->10}|{:->10}|{:->8}|{:->9}|", "", "", "", "", "", "");
    print_row("(a) pgbench hand-written, cold", pg_cold.tps, pg_cold.latency_ms, f64::NAN, pg_cold.failed, pg_cold.tps);
    print_row("    pgbench hand-written, hot", pg_hot.tps, pg_hot.latency_ms, f64::NAN, pg_hot.failed, pg_cold.tps);
    print_row(
        "(b) HTTP POST /v1/transfers, cold",
        cold.throughput(),
        cold.percentile_ms(0.5),
        cold.percentile_ms(0.99),
        cold.errors,
        pg_cold.tps,
    );
    print_row(
        "    HTTP POST /v1/transfers, hot",
        hot.throughput(),
        hot.percentile_ms(0.5),
        hot.percentile_ms(0.99),
        hot.errors,
        pg_cold.tps,
    );
    println!();
    println!(
        "pgbench p50 column is its average latency. Hot HTTP vs hot pgbench: {:.2}x.",
        hot.throughput() / pg_hot.tps
    );
    println!("load generator CPU: cold {:.2} cores, hot {:.2} cores (of 2)", cold.generator_cores, hot.generator_cores);
    println!("{}", outcome.ledger_batches());
    for error in cold.first_errors.iter().chain(hot.first_errors.iter()) {
        println!("error sample: {error}");
    }
    println!("audit ok: {}", audit["ok"]);
    anyhow::ensure!(outcome.audit_ok(), "the ledger audit failed after the benchmark: {audit}");
    Ok(())
}
