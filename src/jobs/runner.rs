//! The one place that runs a job: which business dates are due, who runs each (a session
//! advisory lock on (job, date), so several server processes never run one twice), and the
//! chunks, each committed together with its progress in `job_runs`.
//!
//! A date is run on a connection taken out of the pool for that purpose: the lock lives as long
//! as the connection, so a process that dies, or a task that is dropped, cannot leave it held.

use crate::ledger::LedgerWriter;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use super::{Chunk, Job, JobContext, Schedule, CATCH_UP_DAYS_MAX};
use crate::clock::Clock;
pub use crate::config::CHUNK_SIZE_MAX;
use crate::config::{Config, JobsConfig};
use crate::domain::business_day::{business_date, local_instant};
use crate::history::clickhouse::ClickHouse;
use crate::shutdown::Shutdown;
use crate::store::job_runs;
use crate::telemetry::Metrics;

/// Chunks one run commits for one date at most; a date with more work goes on at the next run.
pub const CHUNKS_PER_RUN_MAX: u32 = 100_000;

/// What one call of the runner did, for the admin route and `minipay jobs run`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    #[schema(value_type = String, example = "reminders")]
    pub job: &'static str,
    /// Items handled over all dates of this call.
    pub processed: u64,
    /// The business dates this call took up, oldest first (none when everything due was done).
    pub dates: Vec<DateRun>,
    /// What the job adds (retention: `dropped_postgres`, `dropped_clickhouse`,
    /// `clickhouse_error`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DateRun {
    pub business_date: NaiveDate,
    pub outcome: DateOutcome,
    /// Items this call handled for the date.
    pub processed: u64,
    /// Chunks this call committed for the date.
    pub chunks: u32,
    /// Whether an earlier attempt had stopped part-way (a crash, a failure, a shutdown) and
    /// this one went on from its last committed chunk.
    pub resumed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateOutcome {
    /// Run to the end now.
    Done,
    /// Another process finished it between this call's look and its lock.
    AlreadyDone,
    /// Another process is running it.
    Busy,
    /// Stopped between chunks (shutdown, or the per-run chunk bound); the next run goes on.
    Interrupted,
}

impl DateRun {
    fn untouched(business_date: NaiveDate, outcome: DateOutcome) -> DateRun {
        DateRun { business_date, outcome, processed: 0, chunks: 0, resumed: false }
    }
}

/// The business dates a job with `schedule` should have run for at `now`, oldest first, each
/// with the instant it became due.
pub fn due_dates(schedule: Schedule, now: DateTime<Utc>, tz: Tz) -> Vec<(NaiveDate, DateTime<Utc>)> {
    match schedule {
        Schedule::Frequent => vec![(business_date(now, tz), now)],
        Schedule::Daily { at, catch_up_days } => {
            let today = business_date(now, tz);
            let latest = if local_instant(today, at, tz) <= now { Some(today) } else { today.pred_opt() };
            let Some(latest) = latest else { return Vec::new() };
            let days = catch_up_days.clamp(1, CATCH_UP_DAYS_MAX);
            (0..days)
                .rev()
                .filter_map(|back| latest.checked_sub_days(Days::new(u64::from(back))))
                .map(|date| (date, local_instant(date, at, tz)))
                .collect()
        }
    }
}

/// Runs jobs. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pool: PgPool,
    clickhouse: ClickHouse,
    clock: Clock,
    tz: Tz,
    chunk_size: usize,
    abort_after_chunks: Option<u32>,
    metrics: Arc<Metrics>,
    stop: Option<Shutdown>,
    /// For jobs that move money through the ledger writer (installments).
    ledger: Option<LedgerWriter>,
    /// The top-up limit the audit checks the daily counters against.
    daily_charge_limit_krw: i64,
    /// How long idempotency keys are remembered (the session purge forgets older ones).
    idempotency_ttl: chrono::Duration,
}

impl Runner {
    pub fn new(
        pool: PgPool,
        clickhouse: ClickHouse,
        clock: Clock,
        tz: Tz,
        daily_charge_limit_krw: i64,
        config: &JobsConfig,
        metrics: Arc<Metrics>,
    ) -> Runner {
        Runner {
            pool,
            clickhouse,
            clock,
            tz,
            chunk_size: config.chunk_size.clamp(1, CHUNK_SIZE_MAX),
            abort_after_chunks: config.abort_after_chunks,
            metrics,
            stop: None,
            ledger: None,
            daily_charge_limit_krw,
            idempotency_ttl: chrono::Duration::seconds(crate::config::IDEMPOTENCY_TTL_SECS_DEFAULT),
        }
    }

    /// The runner `config` describes, moving money through `ledger` (the process's one
    /// ledger writer).
    pub fn from_config(
        config: &Config,
        pool: PgPool,
        clickhouse: ClickHouse,
        clock: Clock,
        metrics: Arc<Metrics>,
        ledger: LedgerWriter,
    ) -> Runner {
        Runner::new(pool, clickhouse, clock, config.tz, config.daily_charge_limit_krw, &config.jobs, metrics)
            .with_ledger(ledger)
            .with_idempotency_ttl(config.idempotency_ttl)
    }

    /// How long idempotency keys are remembered (two days unless set).
    pub fn with_idempotency_ttl(mut self, idempotency_ttl: chrono::Duration) -> Runner {
        self.idempotency_ttl = idempotency_ttl;
        self
    }

    /// Lets jobs submit ledger commands.
    pub fn with_ledger(mut self, ledger: LedgerWriter) -> Runner {
        self.ledger = Some(ledger);
        self
    }

    /// Stops between chunks once `shutdown` fires (the scheduler's runs); the dates left
    /// `running` go on at the next run.
    pub fn stopping_on(mut self, shutdown: Shutdown) -> Runner {
        self.stop = Some(shutdown);
        self
    }

    /// Another chunk size (tests use small ones to see several chunks); clamped to
    /// 1..=CHUNK_SIZE_MAX.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Runner {
        self.chunk_size = chunk_size.clamp(1, CHUNK_SIZE_MAX);
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(Shutdown::is_triggered)
    }

    /// Runs `job` for the clock's now: every due date that is not done, oldest first. Stops at
    /// the first date that fails, is busy elsewhere or is interrupted (it goes on at the next
    /// run, or in the process that holds it; later dates wait for it).
    pub async fn run<J: Job>(&self, job: &J) -> anyhow::Result<RunReport> {
        let now = self.clock.now();
        let name = job.name().as_str();
        let schedule = job.schedule();
        let due = due_dates(schedule, now, self.tz);
        let done = match (schedule, due.first(), due.last()) {
            (Schedule::Daily { .. }, Some((first, _)), Some((last, _))) => {
                job_runs::done_dates(&self.pool, name, *first, *last).await.context("reading job_runs")?
            }
            (Schedule::Daily { .. }, _, _) | (Schedule::Frequent, _, _) => Vec::new(),
        };
        let mut details = J::Report::default();
        let mut dates = Vec::new();
        let mut committed_chunks = 0;
        for (date, due_at) in due.into_iter().filter(|(date, _)| !done.contains(date)) {
            if self.stopping() {
                break;
            }
            let run = self.run_date(job, &mut details, date, due_at, now, &mut committed_chunks).await?;
            // Dates run in order: a later date may build on an earlier one (interest carries
            // its fractions), so it waits while an earlier one is busy or unfinished.
            let go_on = match run.outcome {
                DateOutcome::Done | DateOutcome::AlreadyDone => true,
                DateOutcome::Busy | DateOutcome::Interrupted => false,
            };
            dates.push(run);
            if !go_on {
                break;
            }
        }
        let details = match serde_json::to_value(details).context("job report")? {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            other => anyhow::bail!("the {name} job's report is not a map: {other}"),
        };
        Ok(RunReport { job: name, processed: dates.iter().map(|run| run.processed).sum(), dates, details })
    }

    async fn run_date<J: Job>(
        &self,
        job: &J,
        details: &mut J::Report,
        date: NaiveDate,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
        committed_chunks: &mut u32,
    ) -> anyhow::Result<DateRun> {
        let name = job.name();
        let mut conn = self.pool.acquire().await.context("job runner: connection")?.detach();
        if !job_runs::try_lock(&mut conn, name.as_str(), date).await? {
            tracing::debug!(job = %name, %date, "job date is being run by another process");
            let _ = conn.close().await;
            return Ok(DateRun::untouched(date, DateOutcome::Busy));
        }
        let result = self.run_locked(job, details, &mut conn, date, due_at, now, committed_chunks).await;
        match &result {
            Ok(run) if run.outcome == DateOutcome::Done => {
                self.metrics.job(name).runs.add(1);
                // A frequent job's pass that found nothing is not news (it happens every tick).
                if run.processed > 0 || run.resumed || job.schedule() != Schedule::Frequent {
                    tracing::info!(job = %name, %date, processed = run.processed, chunks = run.chunks, resumed = run.resumed, "job date done");
                } else {
                    tracing::debug!(job = %name, %date, "job pass found nothing due");
                }
            }
            Ok(run) => {
                tracing::info!(job = %name, %date, outcome = ?run.outcome, processed = run.processed, "job date not finished")
            }
            Err(error) => {
                self.metrics.job(name).failures.add(1);
                tracing::error!(job = %name, %date, error = format!("{error:#}"), "job failed; it resumes at the next run");
                // Best effort: the connection may be what failed.
                if let Err(error) =
                    job_runs::record_failure(&mut conn, name.as_str(), date, &format!("{error:#}")).await
                {
                    tracing::warn!(job = %name, %date, %error, "job failure not recorded");
                }
            }
        }
        // Closing the connection releases the lock; unlocking first hands it over sooner.
        let _ = job_runs::unlock(&mut conn, name.as_str(), date).await;
        let _ = conn.close().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_locked<J: Job>(
        &self,
        job: &J,
        details: &mut J::Report,
        conn: &mut PgConnection,
        date: NaiveDate,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
        committed_chunks: &mut u32,
    ) -> anyhow::Result<DateRun> {
        let name = job.name();
        let start = match job.schedule() {
            Schedule::Frequent => job_runs::Start::Fresh,
            Schedule::Daily { .. } => job_runs::Start::Resume,
        };
        let Some(attempt) = job_runs::begin_attempt(conn, name.as_str(), date, now, start).await? else {
            return Ok(DateRun::untouched(date, DateOutcome::AlreadyDone));
        };
        let ctx = JobContext {
            pool: &self.pool,
            clickhouse: &self.clickhouse,
            ledger: self.ledger.as_ref(),
            now,
            business_date: date,
            due_at,
            tz: self.tz,
            chunk_size: self.chunk_size,
            daily_charge_limit_krw: self.daily_charge_limit_krw,
            idempotency_ttl: self.idempotency_ttl,
            metrics: &self.metrics,
        };
        let mut run = DateRun { resumed: attempt.resumed, ..DateRun::untouched(date, DateOutcome::Interrupted) };
        let mut cursor = attempt.cursor;
        while run.chunks < CHUNKS_PER_RUN_MAX && !self.stopping() {
            let mut tx = conn.begin().await?;
            let chunk: Chunk = job
                .run_chunk(&ctx, &mut tx, cursor, details)
                .await
                .with_context(|| format!("{name} for {date}, chunk after cursor {cursor:?}"))?;
            // A chunk that neither finished, handled anything nor moved on would repeat forever.
            anyhow::ensure!(
                chunk.finished || chunk.processed > 0 || chunk.cursor != cursor,
                "{name} for {date}: a chunk after cursor {cursor:?} made no progress"
            );
            let processed = i64::try_from(chunk.processed).context("chunk processed count")?;
            let finished_at = chunk.finished.then(|| self.clock.now());
            job_runs::record_chunk(&mut tx, name.as_str(), date, processed, chunk.cursor, finished_at).await?;
            tx.commit().await.with_context(|| format!("{name} for {date}: commit"))?;
            self.metrics.job(name).chunks.add(1);
            self.metrics.job(name).items.add(chunk.processed);
            run.chunks += 1;
            run.processed += chunk.processed;
            cursor = chunk.cursor;
            *committed_chunks += 1;
            if self.abort_after_chunks == Some(*committed_chunks) {
                tracing::error!(job = %name, %date, chunks = *committed_chunks, "MINIPAY_JOBS_ABORT_AFTER_CHUNKS: aborting as a crash would");
                std::process::abort();
            }
            if chunk.finished {
                run.outcome = DateOutcome::Done;
                break;
            }
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveTime;

    use super::*;

    fn seoul() -> Tz {
        chrono_tz::Asia::Seoul
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn daily(hour: u32, catch_up_days: u32) -> Schedule {
        Schedule::Daily { at: NaiveTime::from_hms_opt(hour, 0, 0).unwrap(), catch_up_days }
    }

    #[test]
    fn a_daily_job_is_due_from_its_local_time() {
        // 03:59:59 and 04:00 KST on 2026-11-24.
        let before: DateTime<Utc> = "2026-11-23T18:59:59Z".parse().unwrap();
        let at: DateTime<Utc> = "2026-11-23T19:00:00Z".parse().unwrap();
        let dates = |now| due_dates(daily(4, 1), now, seoul()).into_iter().map(|(date, _)| date).collect::<Vec<_>>();
        assert_eq!(dates(before), vec![date("2026-11-23")]);
        assert_eq!(dates(at), vec![date("2026-11-24")]);
        assert_eq!(due_dates(daily(4, 1), at, seoul())[0].1, at);
    }

    #[test]
    fn catching_up_looks_back_a_bounded_number_of_days_oldest_first() {
        let now: DateTime<Utc> = "2026-11-24T00:00:00Z".parse().unwrap(); // 09:00 KST
        let dates: Vec<NaiveDate> = due_dates(daily(4, 3), now, seoul()).into_iter().map(|(date, _)| date).collect();
        assert_eq!(dates, vec![date("2026-11-22"), date("2026-11-23"), date("2026-11-24")]);
        assert_eq!(due_dates(daily(4, 1_000), now, seoul()).len(), CATCH_UP_DAYS_MAX as usize);
    }

    #[test]
    fn a_frequent_job_runs_for_the_instant_on_its_business_date() {
        let now: DateTime<Utc> = "2026-11-24T15:00:00Z".parse().unwrap(); // 00:00 KST on the 25th
        assert_eq!(due_dates(Schedule::Frequent, now, seoul()), vec![(date("2026-11-25"), now)]);
    }
}
