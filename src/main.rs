use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use minipay::app::{self, Application};
use minipay::clock::Clock;
use minipay::config::Config;
use minipay::history::clickhouse::ClickHouse;
use minipay::history::forwarder::Forwarder;
use minipay::history::seed;
use minipay::jobs::{self, JobName, Runner};
use minipay::shutdown::Shutdown;
use minipay::telemetry::Metrics;
use minipay::{ledger, store, telemetry};

#[derive(Parser)]
#[command(name = "minipay", about = "minipay payment backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum JobsCommand {
    /// Run one job by name for the current time, catching up missed business dates: interest,
    /// installments, pending-expiry, reminders, retention, audit or session-purge. Safe beside running
    /// servers: each job runs once per date.
    Run { name: String },
}

#[derive(clap::Args)]
struct SeedArgs {
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

/// Threads tokio may start for blocking work. Its default, 512, lets blocking work grow
/// threads, each with its stack and a malloc arena that keeps what it freed, without bound.
/// Password hashing takes at most `MINIPAY_ARGON2_CONCURRENCY` of them
/// ([`minipay::hashing::CONCURRENCY_MAX`] at most); the rest is for name lookups and the seed
/// generator.
const BLOCKING_THREADS_MAX: usize = minipay::hashing::CONCURRENCY_MAX + 16;

/// Allocations of at least this size get a mapping of their own, given back to the system
/// when freed (glibc's `M_MMAP_THRESHOLD`; 128 KiB by default).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 1024 * 1024;

/// glibc's malloc, with a fixed mmap threshold. The large allocations of the process are the
/// argon2 blocks of the hashing slots (`m_cost`, 19 MiB by default), allocated when a burst
/// of sign-ups or log-ins starts and freed when hashing goes idle (see `minipay::hashing`).
/// By default glibc raises its mmap threshold to the size of each mapped block freed (up to
/// 32 MiB) and its trim threshold to twice that, so after the first one every 19 MiB block
/// came from a thread's arena, and arenas keep what is freed in them: resident memory only
/// ever grew. A fixed threshold keeps those blocks in mappings of their own, unmapped on
/// free, and leaves the trim threshold at 128 KiB, so arenas give their free tops back too.
/// (A replacement allocator such as mimalloc or jemalloc would also return memory, at the
/// cost of a C build and another component to tune; with a handful of large blocks whose
/// lifetime minipay controls, glibc with this one setting is enough.) `MALLOC_MMAP_THRESHOLD_`
/// in the environment still wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    telemetry::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(Cli::parse())) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "minipay failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Openapi => {
            print!("{}", minipay::http::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let config = Config::from_env()?;
            tracing::info!(?config, "starting");
            let application = Application::build(config).await?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            application.run_until_stopped(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = Config::from_env()?;
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
            app::migrate(&config, &pool, &Clock::new(config.clock_mode)).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward => {
            let config = Config::from_env()?;
            let clock = Clock::new(config.clock_mode);
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
            store::migrate(&pool).await.context("PostgreSQL migrations")?;
            let clickhouse = ClickHouse::from_config(&config)?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            Forwarder::new(pool.clone(), clickhouse, clock, Metrics::new())
                .with_abort_after_insert(config.forwarder_abort_after_insert)
                .run(shutdown)
                .await;
            pool.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed(args) => {
            let config = Config::from_env()?;
            let clock = Clock::new(config.clock_mode);
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
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
        Command::Jobs { command: JobsCommand::Run { name } } => {
            let config = Config::from_env()?;
            let Some(job) = JobName::from_name(&name) else {
                anyhow::bail!("no job named {name:?} (known: {})", jobs::JOB_NAMES.join(", "));
            };
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
            store::migrate(&pool).await.context("PostgreSQL migrations")?;
            let clickhouse = ClickHouse::from_config(&config)?;
            let clock = Clock::new(config.clock_mode);
            let metrics = Metrics::new();
            // Installments move money: through a ledger writer of their own, like serve's.
            let settings = minipay::ledger::LedgerSettings {
                tz: config.tz,
                daily_charge_limit_krw: config.daily_charge_limit_krw,
                idempotency_ttl: config.idempotency_ttl,
            };
            let connections = ledger::store::writer_pool(&config.database_url, config.ledger.writers)?;
            let (writer, writer_tasks) = minipay::ledger::LedgerWriter::start(
                pool.clone(),
                connections,
                clock.clone(),
                settings,
                config.ledger.clone(),
                metrics.clone(),
            );
            let runner = Runner::new(pool.clone(), clickhouse, clock, config.tz, &config.jobs, metrics)
                .with_ledger(writer)
                .with_daily_charge_limit(config.daily_charge_limit_krw);
            let run = jobs::run(&runner, job).await;
            drop(runner);
            writer_tasks.join().await;
            pool.close().await;
            match run {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Err(error),
            }
        }
        Command::Audit => {
            let config = Config::from_env()?;
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
            let clickhouse = ClickHouse::from_config(&config)?;
            let now = Clock::new(config.clock_mode).now();
            let report =
                ledger::audit::full(&pool, &clickhouse, now, config.daily_charge_limit_krw, config.tz, &Metrics::new())
                    .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
