//! A writer task's loop: wait for commands whose claims are free, run them as one batch
//! (retried whole on serialization failures and missing partitions), answer their callers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Datelike;
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;

use super::schedule::{Batch, Envelope, Schedule};
use super::{Answer, LedgerError, LedgerSettings, WriterShare};
use crate::clock::Clock;
use crate::config::LedgerConfig;
use crate::domain::business_day::business_date;
use crate::ledger::store;
use crate::store::partitions;
use crate::telemetry::Metrics;

/// Backoff before the first retry; doubles per attempt up to `RETRY_BACKOFF_MAX`, with jitter.
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(2);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// One writer task: what it needs to run batches.
pub(super) struct Worker {
    /// Its place among the process's writer tasks: it runs batches while it is within the
    /// process's share ([`WriterShare`]).
    pub(super) index: usize,
    pub(super) share: WriterShare,
    /// For partition maintenance (sqlx, like the rest of the store).
    pub(super) pool: PgPool,
    /// The writers' own connections (tokio-postgres, for pipelining).
    pub(super) connections: deadpool_postgres::Pool,
    pub(super) clock: Clock,
    pub(super) settings: LedgerSettings,
    pub(super) config: LedgerConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) schedule: Arc<Schedule>,
}

impl Worker {
    pub(super) async fn run(self) {
        let mut share = self.share.active.subscribe();
        loop {
            // The sender lives as long as `self.share`: this waits only while the process's
            // share leaves this task out.
            let _ = share.wait_for(|active| self.index < *active).await;
            let Ok(turn) = self.schedule.turn.clone().acquire_owned().await else { break };
            let Some(batch) = self.next_batch().await else { break };
            let again = self.process(batch.envelopes, turn).await;
            self.schedule.finish(&batch.claims, again);
        }
        // The queue is closed and drained: the tasks left out of the share end too.
        self.share.open_all();
    }

    /// Waits until there are commands whose claims are free, then takes them (see
    /// [`Running::take`]). Ends once the queue is closed and nothing waits.
    async fn next_batch(&self) -> Option<Batch> {
        let mut intake = self.schedule.intake.lock().await;
        loop {
            // Registered before looking, so that a batch ending meanwhile is not missed.
            let released = self.schedule.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut running = self.schedule.running();
                let batch = running.take(&mut intake, self.config.batch_size_max);
                let depth = intake.receiver.len() + running.waiting.len();
                self.metrics.ledger_queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
                if !batch.envelopes.is_empty() {
                    return Some(batch);
                }
                if intake.closed && running.waiting.is_empty() && running.claimed.is_empty() {
                    return None;
                }
            }
            if intake.closed {
                released.await;
            } else {
                tokio::select! {
                    received = intake.receiver.recv() => match received {
                        Some(envelope) => self.schedule.running().waiting.push_back(envelope),
                        None => intake.closed = true,
                    },
                    () = &mut released => {}
                }
            }
        }
    }

    fn business_date(&self) -> chrono::NaiveDate {
        business_date(self.clock.now(), self.settings.tz)
    }

    /// Runs one batch (never empty: see [`super::schedule::Running::take`]) and answers its
    /// callers, except those of commands that turned out to need the external account: those
    /// are handed back to run again with it.
    async fn process(&self, batch: Vec<Envelope>, turn: OwnedSemaphorePermit) -> Vec<Envelope> {
        assert!(
            !batch.is_empty() && batch.len() <= self.config.batch_size_max,
            "a batch of {} commands, outside 1..={}",
            batch.len(),
            self.config.batch_size_max
        );
        let (outcome, attempts) = self.run_batch(&batch, turn).await;
        match outcome {
            Ok(answers) => self.answer(batch, answers, attempts),
            Err(error) => {
                self.metrics.ledger_batches_failed.add(1);
                tracing::error!(%error, size = batch.len(), attempts, "ledger batch failed");
                for envelope in batch {
                    let _ = envelope.reply.send(Err(LedgerError::Unavailable));
                }
                Vec::new()
            }
        }
    }

    /// Attempts the batch until it commits, fails for good, or runs out of attempts; returns
    /// the last attempt's result and how many were made.
    async fn run_batch(
        &self,
        batch: &[Envelope],
        turn: OwnedSemaphorePermit,
    ) -> (Result<Vec<Option<Answer>>, AttemptError>, u32) {
        let mut turn = Some(turn);
        let mut attempt = 1;
        loop {
            match self.attempt(batch, attempt > 1, &mut turn).await {
                Ok(answers) => return (Ok(answers), attempt),
                Err(error) if attempt < self.config.attempts_max && error.is_missing_partition() => {
                    self.create_partitions(batch).await;
                }
                Err(error) if attempt < self.config.attempts_max && error.may_retry() => {
                    self.metrics.ledger_batch_retries.add(1);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => return (Err(error), attempt),
            }
            attempt += 1;
        }
    }

    /// Creates the partitions around today, and those of the months the batch's top-ups count
    /// against: a caught-up installment counts against the limit of its own date, which may lie
    /// in a month long before today's partitions.
    async fn create_partitions(&self, batch: &[Envelope]) {
        let today = self.business_date();
        if let Err(error) = partitions::ensure_around(&self.pool, today).await {
            tracing::warn!(%error, "could not create partitions");
        }
        let mut months: Vec<chrono::NaiveDate> = batch
            .iter()
            .filter_map(|envelope| envelope.command.charging_key(today))
            .filter_map(|(_, date)| date.with_day(1))
            .collect();
        months.sort_unstable();
        months.dedup();
        if let Err(error) = partitions::ensure_months(&self.pool, &months).await {
            tracing::warn!(%error, "could not create partitions");
        }
    }

    /// Answers the callers of a committed batch; returns the commands to run again with the
    /// external account locked (their answer is `None`).
    fn answer(&self, batch: Vec<Envelope>, answers: Vec<Option<Answer>>, attempts: u32) -> Vec<Envelope> {
        assert_eq!(answers.len(), batch.len(), "one answer per command of the batch");
        let size = answers.iter().filter(|answer| answer.is_some()).count() as u64;
        self.metrics.ledger_batches.add(1);
        self.metrics.ledger_batch_size.observe(batch.len() as u64);
        self.metrics.ledger_commands.add(size);
        tracing::debug!(size = batch.len(), attempts, "ledger batch committed");
        let mut again = Vec::new();
        for (mut envelope, answer) in batch.into_iter().zip(answers) {
            match answer {
                Some(answer) => {
                    if matches!(answer, Answer::Applied(Err(_))) {
                        self.metrics.ledger_commands_rejected.add(1);
                    }
                    let _ = envelope.reply.send(Ok(answer));
                }
                None => {
                    self.metrics.ledger_commands_again.add(1);
                    envelope.external = true;
                    again.push(envelope);
                }
            }
        }
        again
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    #[error("no database connection: {0}")]
    Pool(String),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

impl AttemptError {
    fn may_retry(&self) -> bool {
        matches!(self, AttemptError::Database(error) if store::may_retry(error))
    }

    fn is_missing_partition(&self) -> bool {
        matches!(self, AttemptError::Database(error) if store::is_missing_partition(error))
    }
}

fn backoff(attempt: u32) -> Duration {
    let exponential = RETRY_BACKOFF_BASE.saturating_mul(1 << attempt.min(8)).min(RETRY_BACKOFF_MAX);
    let jitter_percent: u32 = rand::thread_rng().gen_range(50..150);
    exponential * jitter_percent / 100
}
