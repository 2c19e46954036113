//! minipay: a payment backend — wallets, top-ups under a daily limit, transfers, split bills,
//! savings and a year of statements — correct under concurrency first, fast second.
//!
//! A guided tour, from the edge inwards:

/// Wiring: `Application` (bind, migrate, serve, shut down) and `start_ledger_writer`, the one
/// place a ledger writer starts.
pub mod app;
/// The command line: one function per command (`main.rs` only sets up the process).
pub mod cli;
/// The one source of time (`system` or `manual`).
pub mod clock;
/// Configuration: every environment variable defined once (clap), with laptop defaults,
/// validated; secrets redacted by type. Depends on no other module but the leaf ones.
pub mod config;
/// Pure rules: money, names, business days, passwords, split bills. Depends on nothing else.
pub mod domain;
/// Password hashing with bounded concurrency, a bounded queue and reused memory.
pub mod hashing;
/// Statements: pages and summaries from PostgreSQL's keyset index or from ClickHouse (one
/// server or a sharded cluster, `history::clickhouse`), the outbox forwarder that feeds it,
/// the daily totals, and the audit's comparison of the two stores.
pub mod history;
/// REST handlers and the state they share (`http::state::AppState`), problem+json errors,
/// OpenAPI (the answers every operation shares are declared once, in `http::problems`), and
/// the server's accept loop with its connection limits (`http::serve`).
pub mod http;
/// Scheduled jobs: their names and schedules (`jobs::schedule`), the scheduler loop, the
/// runner (once per job and business date, in resumable chunks) and one file per job.
pub mod jobs;
/// The double-entry ledger and its batched serializable writer.
pub mod ledger;
/// The process-wide shutdown signal.
pub mod shutdown;
/// PostgreSQL access outside the ledger writer, and where plain reads go: a hot standby that
/// has caught up, or the primary (`store::replica`).
pub mod store;
/// Logs and Prometheus metrics.
pub mod telemetry;
