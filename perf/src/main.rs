//! minipay benchmarks. Each one measures its baseline in the same run and prints the ratio,
//! because shared machines drift.

mod charts;
mod cpu;
mod history;
mod jobs;
mod load;
mod logins;
mod pgbench;
mod scenarios;
mod server;
mod suite;
mod write;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "minipay-perf", about = "minipay benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transfers over HTTP (cold random pairs, hot single receiver) vs a hand-written pgbench
    /// transfer transaction on the same PostgreSQL.
    Write(write::Options),
    /// Statement history over HTTP on a seeded year of entries: naive (PostgreSQL, OFFSET)
    /// vs tuned (ClickHouse, keyset cursor), ordinary accounts and the hot account.
    History(history::Options),
    /// One run of the pending-expiry job over N transfers past their 72 hours, then the audit.
    Expiry(jobs::ExpiryOptions),
    /// One run of the interest job over N savings accounts owed one date (or `--gap-days`
    /// days, as after an outage), then the audit.
    Interest(jobs::InterestOptions),
    /// Bursts of concurrent log-ins at the default argon2 cost: the server's resident memory
    /// at idle, at its peak and after, and the answers (201, or 503 with Retry-After).
    Logins(logins::Options),
    /// One run of the installments job over N fixed savings accounts owed `--gap-days`
    /// installments each (as after an outage), then the audit.
    Installments(jobs::InstallmentOptions),
    /// Everything in one run (perf/run): the pgbench baseline and transfers, naive vs tuned
    /// history, the user scenarios stepped up to the load each sustains, the batch windows
    /// under traffic; writes results/<date>/report.md with PNG charts.
    Run(suite::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Write(options) => write::run(options).await,
        Command::History(options) => history::run(options).await,
        Command::Expiry(options) => jobs::expiry(options).await,
        Command::Interest(options) => jobs::interest(options).await,
        Command::Logins(options) => logins::run(options).await,
        Command::Installments(options) => jobs::installments(options).await,
        Command::Run(options) => suite::run(options).await,
    }
}
