use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use minipay::app::{self, Application};
use minipay::clock::Clock;
use minipay::config::Config;
use minipay::history::clickhouse::ClickHouse;
use minipay::history::forwarder::Forwarder;
use minipay::telemetry::Metrics;
use minipay::shutdown::Shutdown;
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
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_tracing();
    match run(Cli::parse()).await {
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
            let clickhouse = ClickHouse::new(&config.clickhouse_url, &config.clickhouse_database)?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            Forwarder::new(pool.clone(), clickhouse, clock, Metrics::new()).run(shutdown).await;
            pool.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit => {
            let config = Config::from_env()?;
            let pool = store::connect(&config.database_url, 2).await.context("connecting to PostgreSQL")?;
            let report = ledger::audit::run(&pool, config.daily_charge_limit_krw, config.tz).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
