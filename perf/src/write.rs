//! The write benchmark: POST /v1/transfers over HTTP with 100 concurrent clients, random
//! pairs ("cold") and 100 senders to one receiver ("hot"), against pgbench running a
//! hand-written transfer transaction on the same PostgreSQL, in the same run.
//!
//! On a shared machine the capacity drifts over minutes, so baseline and load are measured
//! interleaved, in rounds of four short phases (pgbench cold, HTTP cold, pgbench hot, HTTP
//! hot), and the ratios are taken within each round; the median over the rounds is the result.
//! Before each pgbench phase the statement outbox is left to drain, so that the forwarder
//! carrying the previous HTTP phase's entries to ClickHouse does not run beside pgbench.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Measured seconds of each phase (a round is four phases).
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Rounds of pgbench cold, HTTP cold, pgbench hot, HTTP hot; the ratios reported are the
    /// median over the rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
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
    /// `minipay serve` processes on the one database; client i sends to process i mod N.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// PostgreSQL and ClickHouse database of the benchmark (recreated).
    #[arg(long, default_value = "minipay_bench")]
    pub database: String,
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
                if finished.is_multiple_of(250) || finished == count {
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

/// How each load client picks the sender of its next transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderChoice {
    /// Any sender, at random.
    Random,
    /// Client `n` always sends from sender `n` (modulo the senders).
    OnePerClient,
}

async fn transfer_load(
    client: &reqwest::Client,
    bases: &[String],
    options: &Options,
    label: &str,
    senders: Arc<Vec<BenchUser>>,
    receivers: Arc<Vec<BenchUser>>,
    senders_by: SenderChoice,
) -> LoadReport {
    let skipped = options.only.as_deref().is_some_and(|only| only != label);
    let (warmup, seconds) = if skipped { (0, 0) } else { (options.warmup_seconds, options.seconds) };
    let urls: Vec<String> = bases.iter().map(|base| format!("{base}/v1/transfers")).collect();
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
                let from = if senders_by == SenderChoice::OnePerClient {
                    worker % senders.len()
                } else {
                    rng.gen_range(0..senders.len())
                };
                let mut to = rng.gen_range(0..receivers.len());
                if Arc::ptr_eq(&senders, &receivers) && to == from {
                    to = (to + 1) % receivers.len();
                }
                (from, to, rng.gen_range(1..=100))
            };
            let mut request = client
                .post(&urls[worker % urls.len()])
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
    let ms = |value: f64| if value.is_finite() { format!("{value:.2}") } else { "–".to_owned() };
    println!(
        "| {label:<34} | {:>11} | {:>8} | {:>8} | {errors:>6} | {:>7} |",
        tps_cell(tps),
        ms(p50),
        ms(p99),
        times(tps / baseline)
    );
}

/// CPU per transfer of each process kind, beside PostgreSQL's CPU per pgbench transaction:
/// what a request costs, in a unit that a busy machine barely changes.
fn print_cpu(outcome: &WriteOutcome, seconds: u32) {
    let WriteOutcome { pg_cold, pg_hot, cold, hot, rounds, .. } = outcome;
    let phase_seconds = f64::from(seconds) * rounds.len() as f64;
    let pg_per_tx = |pg: &PgbenchResult| pg.postgres_cpu_s * 1e6 / (pg.tps * phase_seconds).max(1.0);
    let done = |report: &LoadReport| (report.requests - report.errors) as f64;
    println!("CPU per transfer, cold: {}", cold.cpu.per_request(done(cold)));
    println!("CPU per transfer, hot:  {}", hot.cpu.per_request(done(hot)));
    println!(
        "CPU per pgbench transaction: PostgreSQL {:.0} µs cold, {:.0} µs hot",
        pg_per_tx(pg_cold),
        pg_per_tx(pg_hot)
    );
}

/// A ratio as `1.23x`, or `–` when there is none (a phase left out with `--only`).
pub fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "–".to_owned()
    }
}

/// The middle value of the finite ones (the mean of the two middle ones for an even count),
/// NaN when there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|value| value.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Throughput of an HTTP phase, NaN when it did not run.
fn http_tps(report: &LoadReport) -> f64 {
    if report.requests == 0 {
        f64::NAN
    } else {
        report.throughput()
    }
}

/// HTTP transfers per pgbench transaction, within one round or as a median of rounds.
#[derive(Debug, Clone, Copy)]
pub struct Ratios {
    /// Cold HTTP / cold pgbench.
    pub cold: f64,
    /// Hot HTTP / hot pgbench.
    pub hot: f64,
    /// Hot HTTP / cold pgbench.
    pub hot_vs_pg_cold: f64,
}

/// One round's four phases, in the order they ran.
pub struct Round {
    pub pg_cold: PgbenchResult,
    pub cold: LoadReport,
    pub pg_hot: PgbenchResult,
    pub hot: LoadReport,
    /// The wait for the outbox to drain before pgbench cold and before pgbench hot.
    pub outbox_waits: [Duration; 2],
}

impl Round {
    pub fn ratios(&self) -> Ratios {
        Ratios {
            cold: http_tps(&self.cold) / self.pg_cold.tps,
            hot: http_tps(&self.hot) / self.pg_hot.tps,
            hot_vs_pg_cold: http_tps(&self.hot) / self.pg_cold.tps,
        }
    }
}

/// The rounds' pgbench runs of one kind as one: mean throughput and latency (the phases are
/// equally long), failures summed.
fn pgbench_together(runs: &[PgbenchResult]) -> PgbenchResult {
    let n = runs.len().max(1) as f64;
    PgbenchResult {
        tps: runs.iter().map(|run| run.tps).sum::<f64>() / n,
        latency_ms: runs.iter().map(|run| run.latency_ms).sum::<f64>() / n,
        failed: runs.iter().map(|run| run.failed).sum(),
        postgres_cpu_s: runs.iter().map(|run| run.postgres_cpu_s).sum(),
    }
}

/// What one write benchmark measured: every round, and each workload over all rounds.
pub struct WriteOutcome {
    pub rounds: Vec<Round>,
    /// Seconds of each measured phase.
    pub phase_seconds: u32,
    /// pgbench over all rounds.
    pub pg_cold: PgbenchResult,
    pub pg_hot: PgbenchResult,
    /// The HTTP phases of all rounds together.
    pub cold: LoadReport,
    pub hot: LoadReport,
    pub audit: Value,
    /// The server's /metrics text at the end.
    pub metrics: String,
}

impl WriteOutcome {
    fn new(rounds: Vec<Round>, phase_seconds: u32, audit: Value, metrics: String) -> WriteOutcome {
        let pg_cold = pgbench_together(&rounds.iter().map(|round| round.pg_cold).collect::<Vec<_>>());
        let pg_hot = pgbench_together(&rounds.iter().map(|round| round.pg_hot).collect::<Vec<_>>());
        let cold = LoadReport::merged(rounds.iter().map(|round| &round.cold));
        let hot = LoadReport::merged(rounds.iter().map(|round| &round.hot));
        WriteOutcome { rounds, phase_seconds, pg_cold, pg_hot, cold, hot, audit, metrics }
    }

    /// Each ratio's median over the rounds: the benchmark's result.
    pub fn median_ratios(&self) -> Ratios {
        let ratios: Vec<Ratios> = self.rounds.iter().map(Round::ratios).collect();
        Ratios {
            cold: median(ratios.iter().map(|r| r.cold)),
            hot: median(ratios.iter().map(|r| r.hot)),
            hot_vs_pg_cold: median(ratios.iter().map(|r| r.hot_vs_pg_cold)),
        }
    }

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

/// Waits until the forwarder has carried every outbox row to ClickHouse; returns how long.
async fn wait_for_outbox(db: &tokio_postgres::Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let left: i64 = db.query_one("SELECT count(*) FROM statement_outbox", &[]).await?.get(0);
        if left == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the statement outbox did not drain in 5 minutes ({left} rows left)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pgbench baseline and the HTTP transfers, cold and hot, interleaved in rounds, on a
/// fresh `--database` (`minipay_bench`).
/// `--processes` servers on the bench database, with the `--server-env` environment.
async fn start_servers(options: &Options, bench_url: &str) -> anyhow::Result<Vec<Server>> {
    anyhow::ensure!(options.processes >= 1, "--processes must be at least 1");
    let extra: Vec<(&str, String)> = options
        .server_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name, value.to_owned()))
        .collect();
    let mut servers = Vec::new();
    for _ in 0..options.processes {
        servers.push(Server::start(bench_url, &options.database, &extra).await?);
    }
    Ok(servers)
}

pub async fn measure(options: &Options) -> anyhow::Result<WriteOutcome> {
    anyhow::ensure!(options.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(matches!(options.only.as_deref(), None | Some("cold") | Some("hot")), "--only takes cold or hot");
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_url = env("CLICKHOUSE_URL")?;
    let bench_db = options.database.as_str();
    anyhow::ensure!(
        bench_db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--database must be a plain identifier"
    );
    let bench_url = database_url_for(&admin_url, bench_db);
    eprintln!(
        "write benchmark: {} clients, {} rounds of 4 phases x {} s, database {bench_db}",
        options.clients, options.rounds, options.seconds
    );
    recreate_database(&admin_url, &clickhouse_url, bench_db).await?;
    crate::cpu::watch_stores(&bench_url, bench_db, &clickhouse_url).await?;

    eprintln!("[1/4] pgbench tables ({} accounts)", options.pgbench_accounts);
    pgbench::setup(&bench_url, options.pgbench_accounts).await?;

    eprintln!("[2/4] starting minipay and creating {} + {} users", options.users, options.clients + 1);
    let servers = start_servers(options, &bench_url).await?;
    let bases: Vec<String> = servers.iter().map(|server| server.base.clone()).collect();
    let server = &servers[0];
    let (db, connection) = tokio_postgres::connect(&bench_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients as usize * 2).build()?;
    let cold_users = Arc::new(create_users(&client, &server.base, options.users, "cold", FUNDING).await?);
    let hot_senders = Arc::new(create_users(&client, &server.base, options.clients as usize, "hot", FUNDING).await?);
    let hot_receiver = Arc::new(create_users(&client, &server.base, 1, "receiver", FUNDING).await?);

    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        let step = format!("[3/4] round {round}/{}", options.rounds);
        let drained_cold = wait_for_outbox(&db).await?;
        let pg_cold = pgbench::run(
            &bench_url,
            pgbench::Workload::Cold,
            options.pgbench_accounts,
            options.clients,
            options.seconds,
        )
        .await?;
        eprintln!(
            "{step} pgbench cold: {:.0} tps (outbox drained in {:.1} s)",
            pg_cold.tps,
            drained_cold.as_secs_f64()
        );
        let cold = transfer_load(
            &client,
            &bases,
            options,
            "cold",
            cold_users.clone(),
            cold_users.clone(),
            SenderChoice::Random,
        )
        .await;
        eprintln!("{step} HTTP cold: {:.0} transfers/s, {} errors", http_tps(&cold), cold.errors);
        let drained_hot = wait_for_outbox(&db).await?;
        let pg_hot = pgbench::run(
            &bench_url,
            pgbench::Workload::Hot,
            options.pgbench_accounts,
            options.clients,
            options.seconds,
        )
        .await?;
        eprintln!("{step} pgbench hot: {:.0} tps (outbox drained in {:.1} s)", pg_hot.tps, drained_hot.as_secs_f64());
        let hot = transfer_load(
            &client,
            &bases,
            options,
            "hot",
            hot_senders.clone(),
            hot_receiver.clone(),
            SenderChoice::OnePerClient,
        )
        .await;
        eprintln!("{step} HTTP hot: {:.0} transfers/s, {} errors", http_tps(&hot), hot.errors);
        rounds.push(Round { pg_cold, cold, pg_hot, hot, outbox_waits: [drained_cold, drained_hot] });
    }

    eprintln!("[4/4] audit and server metrics");
    wait_for_outbox(&db).await?;
    let audit: Value =
        client.get(format!("{}/admin/audit", server.base)).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    let metrics = client.get(format!("{}/metrics", server.base)).send().await?.text().await?;
    for server in servers {
        server.stop().await;
    }
    Ok(WriteOutcome::new(rounds, options.seconds, audit, metrics))
}

fn tps_cell(tps: f64) -> String {
    if tps.is_finite() {
        format!("{tps:.0}")
    } else {
        "–".to_owned()
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let outcome = measure(&options).await?;
    let WriteOutcome { pg_cold, pg_hot, cold, hot, audit, rounds, .. } = &outcome;
    let median = outcome.median_ratios();
    println!();
    println!(
        "minipay write benchmark — {} clients, {} server process(es), {} rounds of 4 phases x {} s (pgbench cold, \
         HTTP cold, pgbench hot, HTTP hot){}",
        options.clients,
        options.processes,
        options.rounds,
        options.seconds,
        if options.idempotency_keys { ", with Idempotency-Key" } else { "" }
    );
    println!();
    println!("Per round, transfers/s, and HTTP / pgbench within the round:");
    println!();
    println!(
        "| {:>6} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>11} | {:>13} |",
        "round", "pg cold", "HTTP cold", "pg hot", "HTTP hot", "cold/cold", "hot/hot", "hot/pg cold", "outbox wait s"
    );
    println!(
        "|{:->8}|{:->10}|{:->11}|{:->10}|{:->10}|{:->11}|{:->11}|{:->13}|{:->15}|",
        "", "", "", "", "", "", "", "", ""
    );
    for (index, round) in rounds.iter().enumerate() {
        let ratios = round.ratios();
        println!(
            "| {:>6} | {:>8.0} | {:>9} | {:>8.0} | {:>8} | {:>9} | {:>9} | {:>11} | {:>13} |",
            index + 1,
            round.pg_cold.tps,
            tps_cell(http_tps(&round.cold)),
            round.pg_hot.tps,
            tps_cell(http_tps(&round.hot)),
            times(ratios.cold),
            times(ratios.hot),
            times(ratios.hot_vs_pg_cold),
            format!("{:.1} + {:.1}", round.outbox_waits[0].as_secs_f64(), round.outbox_waits[1].as_secs_f64()),
        );
    }
    println!(
        "| {:>6} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>11} | {:>13} |",
        "median",
        "",
        "",
        "",
        "",
        times(median.cold),
        times(median.hot),
        times(median.hot_vs_pg_cold),
        ""
    );
    println!();
    println!("All rounds together ({} s per workload):", options.seconds * options.rounds);
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
        http_tps(cold),
        cold.percentile_ms(0.5),
        cold.percentile_ms(0.99),
        cold.errors,
        pg_cold.tps,
    );
    print_row(
        "    HTTP POST /v1/transfers, hot",
        http_tps(hot),
        hot.percentile_ms(0.5),
        hot.percentile_ms(0.99),
        hot.errors,
        pg_cold.tps,
    );
    println!();
    println!(
        "Median of {} interleaved rounds: cold HTTP / cold pgbench {}, hot HTTP / hot pgbench {}, \
         hot HTTP / cold pgbench {}.",
        rounds.len(),
        times(median.cold),
        times(median.hot),
        times(median.hot_vs_pg_cold)
    );
    println!("pgbench p50 column is its average latency; outbox wait = before pgbench cold + before pgbench hot.");
    println!("load generator CPU: cold {:.2} cores, hot {:.2} cores (of 2)", cold.generator_cores, hot.generator_cores);
    print_cpu(&outcome, options.seconds);
    println!("{}{}", outcome.ledger_batches(), if options.processes > 1 { " (the first process)" } else { "" });
    for error in cold.first_errors.iter().chain(hot.first_errors.iter()) {
        println!("error sample: {error}");
    }
    println!("audit ok: {}", audit["ok"]);
    anyhow::ensure!(outcome.audit_ok(), "the ledger audit failed after the benchmark: {audit}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_missing() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([f64::NAN, 5.0, 1.0, 3.0]), 3.0);
        assert!(median([f64::NAN]).is_nan());
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        let pg = |tps| PgbenchResult { tps, latency_ms: 10.0, failed: 0, postgres_cpu_s: 0.0 };
        let http = |requests| LoadReport { requests, elapsed: Duration::from_secs(1), ..LoadReport::default() };
        // Round 2 ran on a machine twice as slow, for both sides alike.
        let rounds = vec![
            Round {
                pg_cold: pg(1000.0),
                cold: http(800),
                pg_hot: pg(100.0),
                hot: http(900),
                outbox_waits: [Duration::ZERO; 2],
            },
            Round {
                pg_cold: pg(500.0),
                cold: http(400),
                pg_hot: pg(50.0),
                hot: http(450),
                outbox_waits: [Duration::ZERO; 2],
            },
            Round {
                pg_cold: pg(1000.0),
                cold: http(700),
                pg_hot: pg(100.0),
                hot: http(1000),
                outbox_waits: [Duration::ZERO; 2],
            },
        ];
        let outcome = WriteOutcome::new(rounds, 1, json!({"ok": true}), String::new());
        let median = outcome.median_ratios();
        assert!((median.cold - 0.8).abs() < 1e-9);
        assert!((median.hot - 9.0).abs() < 1e-9);
        assert!((median.hot_vs_pg_cold - 0.9).abs() < 1e-9);
        assert_eq!(outcome.cold.requests, 1900);
        assert!((outcome.pg_cold.tps - 2500.0 / 3.0).abs() < 1e-9);
        // A phase left out with --only has no ratio.
        let skipped = Round {
            pg_cold: pg(1000.0),
            cold: http(0),
            pg_hot: pg(100.0),
            hot: http(900),
            outbox_waits: [Duration::ZERO; 2],
        };
        assert!(skipped.ratios().cold.is_nan());
        assert_eq!(times(skipped.ratios().cold), "–");
    }
}
