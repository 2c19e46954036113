//! The batched ledger writer: a bounded queue, a few writer tasks, one short SERIALIZABLE
//! transaction per batch, whole-batch retry on serialization failures (COMMIT included).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use super::apply::{apply, BatchContext, Command, CommandError, LedgerState, Outcome};
use super::store;
use crate::clock::Clock;
use crate::config::LedgerConfig;
use crate::domain::business_day::business_date;
use crate::store::partitions;
use crate::store::tx::{is_missing_partition, is_retryable};
use crate::telemetry::Metrics;

/// Backoff before the first retry; doubles per attempt up to `RETRY_BACKOFF_MAX`, with jitter.
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(2);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// The queue is full: the caller should come back later.
    #[error("the ledger writer is saturated")]
    Busy,
    /// The batch could not be committed (database down, retries exhausted) or the writer is
    /// stopping. Nothing of the command was committed, unless the connection broke during
    /// COMMIT, which is why money-moving requests carry idempotency keys.
    #[error("the ledger is unavailable")]
    Unavailable,
}

/// What every batch needs besides its commands.
#[derive(Clone)]
pub struct LedgerSettings {
    pub tz: Tz,
    pub daily_charge_limit_krw: i64,
}

struct Envelope {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, LedgerError>>,
}

/// The handle callers submit commands through. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    sender: mpsc::Sender<Envelope>,
    metrics: Arc<Metrics>,
}

/// The writer tasks; they end once every `LedgerWriter` is dropped and the queue is drained.
pub struct WriterTasks(Vec<JoinHandle<()>>);

impl WriterTasks {
    pub async fn join(self) {
        for task in self.0 {
            let _ = task.await;
        }
    }
}

struct Worker {
    pool: PgPool,
    clock: Clock,
    settings: LedgerSettings,
    config: LedgerConfig,
    metrics: Arc<Metrics>,
    queue: Arc<Mutex<mpsc::Receiver<Envelope>>>,
}

impl LedgerWriter {
    pub fn start(pool: PgPool, clock: Clock, settings: LedgerSettings, config: LedgerConfig, metrics: Arc<Metrics>) -> (LedgerWriter, WriterTasks) {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let queue = Arc::new(Mutex::new(receiver));
        let tasks = (0..config.writers)
            .map(|_| {
                let worker = Worker {
                    pool: pool.clone(),
                    clock: clock.clone(),
                    settings: settings.clone(),
                    config: config.clone(),
                    metrics: metrics.clone(),
                    queue: queue.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        (LedgerWriter { sender, metrics }, WriterTasks(tasks))
    }

    /// Queues the command and waits for its batch to commit (or be given up).
    pub async fn submit(&self, command: Command) -> Result<Outcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.sender.try_send(Envelope { command, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.ledger_queue_full.add(1);
                LedgerError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => LedgerError::Unavailable,
        })?;
        answer.await.unwrap_or(Err(LedgerError::Unavailable))
    }
}

impl Worker {
    async fn run(self) {
        while let Some(batch) = self.next_batch().await {
            self.process(batch).await;
        }
    }

    /// Waits for one command, then takes whatever else is queued, up to the batch size.
    async fn next_batch(&self) -> Option<Vec<Envelope>> {
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let mut batch = Vec::with_capacity(self.config.batch_size_max.min(64));
        batch.push(first);
        while batch.len() < self.config.batch_size_max {
            match queue.try_recv() {
                Ok(envelope) => batch.push(envelope),
                Err(_) => break,
            }
        }
        self.metrics.ledger_queue_depth.set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        // Callers that gave up (timed out, disconnected) must not have money moved for them.
        batch.retain(|envelope| !envelope.reply.is_closed());
        Some(batch)
    }

    async fn process(&self, batch: Vec<Envelope>) {
        if batch.is_empty() {
            return;
        }
        let commands: Vec<Command> = batch.iter().map(|envelope| envelope.command.clone()).collect();
        let mut attempt = 1;
        let outcome = loop {
            match self.attempt(&commands).await {
                Ok(results) => break Ok(results),
                Err(error) if attempt < self.config.attempts_max && is_missing_partition(&error) => {
                    let today = business_date(self.clock.now(), self.settings.tz);
                    if let Err(error) = partitions::ensure_around(&self.pool, today).await {
                        tracing::warn!(%error, "could not create partitions");
                    }
                }
                Err(error) if attempt < self.config.attempts_max && is_retryable(&error) => {
                    self.metrics.ledger_batch_retries.add(1);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => break Err(error),
            }
            attempt += 1;
        };
        match outcome {
            Ok(results) => {
                self.metrics.ledger_batches.add(1);
                self.metrics.ledger_batch_size.observe(batch.len() as u64);
                self.metrics.ledger_commands.add(batch.len() as u64);
                tracing::debug!(size = batch.len(), attempts = attempt, "ledger batch committed");
                for (envelope, result) in batch.into_iter().zip(results) {
                    if result.is_err() {
                        self.metrics.ledger_commands_rejected.add(1);
                    }
                    let _ = envelope.reply.send(result.map_err(LedgerError::Rejected));
                }
            }
            Err(error) => {
                self.metrics.ledger_batches_failed.add(1);
                tracing::error!(%error, size = batch.len(), attempts = attempt, "ledger batch failed");
                for envelope in batch {
                    let _ = envelope.reply.send(Err(LedgerError::Unavailable));
                }
            }
        }
    }

    /// One attempt: lock, load, apply, write, commit. Nothing is sent to callers here, so a
    /// failed attempt (COMMIT included) can be repeated from scratch.
    async fn attempt(&self, commands: &[Command]) -> sqlx::Result<Vec<Result<Outcome, CommandError>>> {
        let now = self.clock.now();
        let context = BatchContext {
            now,
            business_date: business_date(now, self.settings.tz),
            daily_charge_limit_krw: self.settings.daily_charge_limit_krw,
        };
        let account_ids: BTreeSet<_> = commands.iter().flat_map(Command::accounts).collect();
        let daily_keys: BTreeSet<_> =
            commands.iter().filter_map(Command::charging_user).map(|user| (user, context.business_date)).collect();

        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
        let mut state = LedgerState {
            accounts: store::lock_accounts(&mut tx, &account_ids).await?,
            daily_used: store::lock_daily_charges(&mut tx, &daily_keys).await?,
        };
        let (results, effects) = apply(&mut state, &context, commands);
        store::write_effects(&mut tx, now, &state, &effects).await?;
        tx.commit().await?;
        Ok(results)
    }
}

fn backoff(attempt: u32) -> Duration {
    let exponential = RETRY_BACKOFF_BASE.saturating_mul(1 << attempt.min(8)).min(RETRY_BACKOFF_MAX);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    exponential.mul_f64(jitter)
}
