//! Scheduled jobs: what runs, when, and exactly once.
//!
//! - [`JobName`] is every job the API knows and its [`Schedule`]: a daily job runs once per
//!   business date from its local time of day in the business time zone; a frequent job acts on
//!   instants (a reminder is due 24 hours before expiry, to the minute) and runs on every
//!   scheduler tick and whenever asked.
//! - [`runner::Runner`] is the one place that runs a job: it works out the business dates that
//!   are due and not yet done (catching up after downtime, within the job's look-back), takes a
//!   PostgreSQL advisory lock on (job, date) so that of several server processes exactly one
//!   runs it, and runs it chunk by chunk, each chunk one transaction that also records the
//!   progress in `job_runs`. A crash loses at most the chunk in flight, whose effects roll back
//!   with it; the next run resumes after the last committed chunk.
//! - [`scheduler::Scheduler`] ticks inside `serve` and asks the runner for every job; the admin
//!   route and `minipay jobs run <name>` ask it for one job. All three go through [`run`].
//!
//! # Adding a job
//!
//! 1. Write `src/jobs/<job>.rs` with a unit struct implementing [`Job`]: its [`JobName`], a
//!    `Report` type for what its answer adds beside `job` and `processed` (`()` for nothing),
//!    and `run_chunk`, which does the next bounded piece of work for `ctx.business_date` inside
//!    the transaction it is given and says where the next piece starts (see [`Chunk`]).
//!    Select work with `ORDER BY ... LIMIT ctx.chunk_size FOR UPDATE SKIP LOCKED`, and make a
//!    date's work depend only on that date (`ctx.due_at`), so that catching up a missed date
//!    does what running on time would have done, and does nothing for dates before its data
//!    existed. A job that owes each item something for every date (interest, installments)
//!    rather keeps a marker per item, written with the item's effects, and runs only its latest
//!    date (`catch_up_days: 1`), whose run does every date the item missed, however many: a
//!    long gap then costs one pass over the items, not one per date.
//! 2. Add its [`JobName`] (name, schedule) and its arm in [`run`]: `runner.run(&<job>::<Job>).await`.
//!
//! The name, schedule, HTTP route, CLI command, locking, resume and metrics come with it.

pub mod audit;
pub mod installments;
pub mod interest;
pub mod pending_expiry;
pub mod reminders;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod session_purge;

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::history::clickhouse::ClickHouse;
pub use runner::{DateOutcome, DateRun, RunReport, Runner};
pub use schedule::{JobName, Schedule, JOB_NAMES};

/// The most dates a daily job that runs missed dates one by one looks back. None of minipay's
/// jobs needs it: the money-moving ones catch up every missed day per account in their latest
/// date's run, and the others (retention, audit) act as of now, which covers every missed date.
pub const CATCH_UP_DAYS_MAX: u32 = 31;

/// What a chunk of a job may use and needs to know.
pub struct JobContext<'a> {
    /// For work outside the chunk's transaction (DDL, other stores); most jobs need only the
    /// transaction `run_chunk` is given.
    pub pool: &'a PgPool,
    pub clickhouse: &'a ClickHouse,
    /// The ledger writer, where the runner has one (`serve` and `minipay jobs run` do).
    pub ledger: Option<&'a crate::ledger::LedgerWriter>,
    /// The clock when the run began (it stands still for the whole run).
    pub now: DateTime<Utc>,
    /// The business date being run.
    pub business_date: NaiveDate,
    /// When the job became due for `business_date` (for a frequent job, `now`). A date caught up
    /// late is computed as of this instant.
    pub due_at: DateTime<Utc>,
    pub tz: Tz,
    /// The most items one chunk may handle.
    pub chunk_size: usize,
    /// The configured daily top-up limit (for the audit).
    pub daily_charge_limit_krw: i64,
    /// How long idempotency keys are remembered (the session purge forgets older ones).
    pub idempotency_ttl: chrono::Duration,
    /// The process's metrics, for jobs that export more than the runner counts (the audit).
    pub metrics: &'a crate::telemetry::Metrics,
}

/// What a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Items handled (postings, notifications, partitions).
    pub processed: u64,
    /// Where the next chunk starts (e.g. the last id this one covered); committed with this
    /// chunk's effects and handed to the next chunk, after a crash too.
    pub cursor: Option<i64>,
    /// Nothing is left for this date (for a frequent job: nothing more is due now).
    pub finished: bool,
}

impl Chunk {
    pub fn more(processed: u64, cursor: Option<i64>) -> Chunk {
        Chunk { processed, cursor, finished: false }
    }

    pub fn finished(processed: u64) -> Chunk {
        Chunk { processed, cursor: None, finished: true }
    }

    /// A chunk that selected up to `limit` items: a full one may have left more behind.
    pub fn after_batch(processed: u64, limit: usize, cursor: Option<i64>) -> Chunk {
        Chunk { processed, cursor, finished: processed < limit as u64 }
    }
}

/// One job. See the module documentation for how a job plugs in.
pub trait Job: Send + Sync {
    /// What the job's answer adds beside `job` and `processed`, summed over the dates of a run.
    /// Must serialize as a map (a struct) or as `()`.
    type Report: Default + Serialize + Send;

    fn name(&self) -> JobName;

    fn schedule(&self) -> Schedule {
        self.name().schedule()
    }

    /// Does the next bounded piece of the work for `ctx.business_date`, starting after
    /// `cursor` (`None` at the start). `conn` is in a transaction that the runner commits
    /// together with the progress this returns: write the effects through it, and nothing is
    /// done twice whatever crashes when.
    fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        cursor: Option<i64>,
        report: &mut Self::Report,
    ) -> impl Future<Output = anyhow::Result<Chunk>> + Send;
}

/// Runs the named job for the runner's clock, catching up missed dates: the one place that
/// maps names to implementations.
pub async fn run(runner: &Runner, name: JobName) -> anyhow::Result<RunReport> {
    match name {
        JobName::Reminders => runner.run(&reminders::Reminders).await,
        JobName::Retention => runner.run(&retention::Retention).await,
        JobName::Interest => runner.run(&interest::Interest).await,
        JobName::PendingExpiry => runner.run(&pending_expiry::PendingExpiry).await,
        JobName::Installments => runner.run(&installments::Installments).await,
        JobName::Audit => runner.run(&audit::Audit).await,
        JobName::SessionPurge => runner.run(&session_purge::SessionPurge).await,
    }
}
