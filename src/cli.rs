//! The command line: `serve`, `migrate`, `audit`, `forward`, `openapi`, `jobs run`, `seed`.
//! Each command is one function that reads the configuration, wires what it needs and runs;
//! `main.rs` only sets up the process (allocator, logs, runtime) and calls [`run`].

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::PgPool;

use crate::app::{self, Application};
use crate::clock::Clock;
use crate::config::Config;
use crate::history::clickhouse::ClickHouse;
use crate::history::forwarder::Forwarder;
use crate::history::seed;
use crate::jobs::{self, JobName, Runner};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::{ledger, store};

#[derive(Parser)]
#[command(name = "minipay", about = "minipay payment backend")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the REST API (applies migrations first).
    Serve,
    /// Apply the PostgreSQL and ClickHouse migrations.
    Migrate,
    /// Check the ledger invariants; exits 1 if any fails.
    Audit,
    /// Run only the history forwarder (outbox → ClickHouse) until ctrl-c.
    Forward,
    /// Print the OpenAPI document.
    Openapi,
    /// Run a scheduled job once for the current time (catching up missed dates).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Migrate, then fill both stores with benchmark data: users with main accounts and a
    /// year of statement entries (one hot account), bypassing the ledger. Every seeded user's
    /// password is "seeded password".
    Seed(SeedArgs),
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Run one job by name for the current time, catching up missed business dates: interest,
    /// installments, pending-expiry, reminders, retention, audit or session-purge. Safe beside running
    /// servers: each job runs once per date.
    Run { name: String },
}

#[derive(clap::Args)]
pub struct SeedArgs {
    /// Users, each with a main account; the first is the hot account (`{prefix}hot`), then the
    /// heavy ones.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Statement entries over the last 12 months (at most 100,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    /// Percentage of all entries on the hot account.
    #[arg(long, default_value_t = 5)]
    hot_percent: u32,
    /// Heavy accounts besides the hot one (`{prefix}heavy1`, ...), each with --heavy-percent
    /// of all entries.
    #[arg(long, default_value_t = 4)]
    heavy_accounts: u32,
    /// Percentage of all entries on each heavy account.
    #[arg(long, default_value_t = 2)]
    heavy_percent: u32,
    /// Seeded user names: `{prefix}hot`, `{prefix}heavy1`, ..., `{prefix}1`, `{prefix}2`, ...
    #[arg(long, default_value = "seed")]
    prefix: String,
    /// Entries generated per chunk (memory stays at a few chunks).
    #[arg(long, default_value_t = 100_000)]
    chunk_rows: usize,
    /// Random seed, for the same data every time.
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
}

/// Connections a command other than `serve` needs: a few.
const COMMAND_POOL_SIZE: u32 = 2;

/// Runs one command to its end.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Openapi => {
            print!("{}", crate::http::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(Config::from_env()?).await,
        Command::Migrate => migrate(Config::from_env()?).await,
        Command::Forward => forward(Config::from_env()?).await,
        Command::Seed(args) => seed(Config::from_env()?, args).await,
        Command::Jobs { command: JobsCommand::Run { name } } => run_job(Config::from_env()?, &name).await,
        Command::Audit => audit(Config::from_env()?).await,
    }
}

async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    store::connect(&config.database_url, COMMAND_POOL_SIZE, None).await.context("connecting to PostgreSQL")
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    tracing::info!(?config, "starting");
    let application = Application::build(config).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    application.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let pool = connect(&config).await?;
    app::migrate(&config, &pool, &Clock::new(config.clock_mode)).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

async fn forward(config: Config) -> anyhow::Result<ExitCode> {
    let clock = Clock::new(config.clock_mode);
    let pool = connect(&config).await?;
    store::migrate(&pool).await.context("PostgreSQL migrations")?;
    let clickhouse = ClickHouse::from_config(&config)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    Forwarder::new(pool.clone(), clickhouse, clock, Metrics::new())
        .with_abort_after_insert(config.forwarder_abort_after_insert)
        .with_linger(config.forwarder_linger)
        .run(shutdown)
        .await;
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn seed(config: Config, args: SeedArgs) -> anyhow::Result<ExitCode> {
    let clock = Clock::new(config.clock_mode);
    let pool = connect(&config).await?;
    app::migrate(&config, &pool, &clock).await?;
    let clickhouse = ClickHouse::from_config(&config)?;
    let options = seed::SeedOptions {
        users: args.users,
        entries: args.entries,
        hot_percent: args.hot_percent,
        heavy_accounts: args.heavy_accounts,
        heavy_percent: args.heavy_percent,
        prefix: args.prefix,
        chunk_rows: args.chunk_rows,
        rng_seed: args.rng_seed,
    };
    let report = seed::run(&pool, &config.database_url, &clickhouse, &options, clock.now()).await?;
    pool.close().await;
    println!(
        "seeded {} accounts (hot account {}, heavy accounts {:?}) and {} entries (ids from {}) in {} ms",
        report.accounts,
        report.hot_account_id,
        report.heavy_account_ids,
        report.entries,
        report.first_entry_id,
        report.elapsed.as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs one job, catching up missed dates. Installments move money: through a ledger writer
/// of this process's own, started as `serve` starts its one.
async fn run_job(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    let Some(job) = JobName::from_name(name) else {
        anyhow::bail!("no job named {name:?} (known: {})", jobs::JOB_NAMES.join(", "));
    };
    let pool = connect(&config).await?;
    store::migrate(&pool).await.context("PostgreSQL migrations")?;
    let clickhouse = ClickHouse::from_config(&config)?;
    let clock = Clock::new(config.clock_mode);
    let metrics = Metrics::new();
    let (writer, writer_tasks) = app::start_ledger_writer(&config, &pool, &clock, &metrics)?;
    let runner = Runner::from_config(&config, pool.clone(), clickhouse, clock, metrics, writer);
    let run = jobs::run(&runner, job).await;
    // The runner holds the last LedgerWriter handle: dropping it lets the writers stop.
    drop(runner);
    writer_tasks.join().await;
    pool.close().await;
    println!("{}", serde_json::to_string_pretty(&run?)?);
    Ok(ExitCode::SUCCESS)
}

async fn audit(config: Config) -> anyhow::Result<ExitCode> {
    let pool = connect(&config).await?;
    let clickhouse = ClickHouse::from_config(&config)?;
    let now = Clock::new(config.clock_mode).now();
    let report =
        ledger::audit::full(&pool, &clickhouse, now, config.daily_charge_limit_krw, config.tz, &Metrics::new()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
