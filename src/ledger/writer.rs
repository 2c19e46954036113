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
use crate::store::idempotency::{KeyId, KeyRecord, StoredResponse};
use crate::store::partitions;
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
    /// Idempotency keys older than this are forgotten (and may be used again).
    pub idempotency_ttl: chrono::Duration,
}

/// Turns a command's result into the response stored with its idempotency key. Supplied by
/// the caller, so that the ledger stores responses without knowing their shape.
pub type Render = Arc<dyn Fn(&Result<Outcome, CommandError>) -> StoredResponse + Send + Sync>;

/// An idempotency key with the fingerprint of the request it came with.
pub struct Idempotency {
    pub user_id: crate::domain::accounts::UserId,
    pub key: String,
    pub fingerprint: Vec<u8>,
    pub render: Render,
}

/// The answer to an idempotent submission.
pub enum Answer {
    /// The command ran now; its response was stored under the key.
    Applied(Result<Outcome, CommandError>),
    /// The key had been used with the same request: the first response, unchanged.
    Replayed(StoredResponse),
    /// The key had been used with a different request.
    KeyReused,
}

struct Envelope {
    command: Command,
    idempotency: Option<Idempotency>,
    reply: oneshot::Sender<Result<Answer, LedgerError>>,
}

/// Returns true when a repeat of `record`'s key carries the same request.
fn same_request(record: &KeyRecord, fingerprint: &[u8]) -> bool {
    record.fingerprint == fingerprint
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
    /// For partition maintenance (sqlx, like the rest of the store).
    pool: PgPool,
    /// The writers' own connections (tokio-postgres, for pipelining).
    connections: deadpool_postgres::Pool,
    clock: Clock,
    settings: LedgerSettings,
    config: LedgerConfig,
    metrics: Arc<Metrics>,
    queue: Arc<Mutex<mpsc::Receiver<Envelope>>>,
}

impl LedgerWriter {
    pub fn start(
        pool: PgPool,
        connections: deadpool_postgres::Pool,
        clock: Clock,
        settings: LedgerSettings,
        config: LedgerConfig,
        metrics: Arc<Metrics>,
    ) -> (LedgerWriter, WriterTasks) {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let queue = Arc::new(Mutex::new(receiver));
        let tasks = (0..config.writers)
            .map(|_| {
                let worker = Worker {
                    pool: pool.clone(),
                    connections: connections.clone(),
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
        match self.submit_with(command, None).await? {
            Answer::Applied(result) => result.map_err(LedgerError::Rejected),
            // Without a key there is nothing to replay or reuse.
            Answer::Replayed(_) | Answer::KeyReused => Err(LedgerError::Unavailable),
        }
    }

    /// Like `submit`, with an optional idempotency key: the key and the rendered response are
    /// stored in the batch's transaction; a repeat replays instead of running again.
    pub async fn submit_with(&self, command: Command, idempotency: Option<Idempotency>) -> Result<Answer, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.sender.try_send(Envelope { command, idempotency, reply }).map_err(|error| match error {
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
        let mut attempt = 1;
        let outcome = loop {
            match self.attempt(&batch).await {
                Ok(answers) => break Ok(answers),
                Err(error) if attempt < self.config.attempts_max && error.is_missing_partition() => {
                    let today = business_date(self.clock.now(), self.settings.tz);
                    if let Err(error) = partitions::ensure_around(&self.pool, today).await {
                        tracing::warn!(%error, "could not create partitions");
                    }
                }
                Err(error) if attempt < self.config.attempts_max && error.may_retry() => {
                    self.metrics.ledger_batch_retries.add(1);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => break Err(error),
            }
            attempt += 1;
        };
        match outcome {
            Ok(answers) => {
                self.metrics.ledger_batches.add(1);
                self.metrics.ledger_batch_size.observe(batch.len() as u64);
                self.metrics.ledger_commands.add(batch.len() as u64);
                tracing::debug!(size = batch.len(), attempts = attempt, "ledger batch committed");
                for (envelope, answer) in batch.into_iter().zip(answers) {
                    if matches!(answer, Answer::Applied(Err(_))) {
                        self.metrics.ledger_commands_rejected.add(1);
                    }
                    let _ = envelope.reply.send(Ok(answer));
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
    async fn attempt(&self, batch: &[Envelope]) -> Result<Vec<Answer>, AttemptError> {
        let client = self.connections.get().await.map_err(|error| AttemptError::Pool(error.to_string()))?;
        match self.attempt_on(&client, batch).await {
            Ok(answers) => Ok(answers),
            Err(error) => {
                // A connection whose transaction cannot be ended is not given back to the pool.
                if store::rollback(&client).await.is_err() {
                    let _ = deadpool_postgres::Object::take(client);
                }
                Err(AttemptError::Database(error))
            }
        }
    }

    async fn attempt_on(
        &self,
        client: &deadpool_postgres::Object,
        batch: &[Envelope],
    ) -> Result<Vec<Answer>, tokio_postgres::Error> {
        let now = self.clock.now();
        let context = BatchContext {
            now,
            business_date: business_date(now, self.settings.tz),
            daily_charge_limit_krw: self.settings.daily_charge_limit_krw,
        };
        let account_ids: BTreeSet<_> = batch.iter().flat_map(|envelope| envelope.command.accounts()).collect();
        let daily_keys: BTreeSet<_> =
            batch.iter().filter_map(|envelope| envelope.command.charging_key(context.business_date)).collect();
        let key_ids: BTreeSet<KeyId> = batch
            .iter()
            .filter_map(|envelope| {
                envelope.idempotency.as_ref().map(|idempotency| (idempotency.user_id, idempotency.key.clone()))
            })
            .collect();
        let key_ids: Vec<KeyId> = key_ids.into_iter().collect();
        // At most one transfer id per command; unused ones are gaps in the sequence.
        let transfers_possible = batch.iter().filter(|envelope| envelope.command.creates_transfer()).count();

        let started = std::time::Instant::now();
        let transfers: BTreeSet<i64> =
            batch.iter().filter_map(|envelope| envelope.command.transfer_to_lock()).collect();
        let settlements: BTreeSet<i64> =
            batch.iter().filter_map(|envelope| envelope.command.settlement_to_lock()).collect();
        let locked = store::begin_and_lock(
            client,
            store::ToLock {
                account_ids: &account_ids,
                daily_keys: &daily_keys,
                key_ids: &key_ids,
                keys_expired_before: now - self.settings.idempotency_ttl,
                transfer_ids_needed: transfers_possible,
                transfers: &transfers,
                settlements: &settlements,
            },
        )
        .await?;
        let read = started.elapsed();
        let mut known_keys = locked.known_keys;

        // Commands whose key was already used are answered from the stored record; a key used
        // twice within the batch runs once, and the repeat is answered after the run.
        let mut plan: Vec<Option<Answer>> = Vec::with_capacity(batch.len());
        let mut to_run: Vec<Command> = Vec::new();
        let mut run_index: Vec<usize> = Vec::new();
        let mut first_in_batch: std::collections::HashSet<KeyId> = std::collections::HashSet::new();
        for (index, envelope) in batch.iter().enumerate() {
            let answer = match &envelope.idempotency {
                Some(idempotency) => {
                    let id = (idempotency.user_id, idempotency.key.clone());
                    match known_keys.get(&id) {
                        Some(record) if same_request(record, &idempotency.fingerprint) => {
                            Some(Answer::Replayed(record.response.clone()))
                        }
                        Some(_) => Some(Answer::KeyReused),
                        None if first_in_batch.contains(&id) => None,
                        None => {
                            first_in_batch.insert(id);
                            run_index.push(index);
                            to_run.push(envelope.command.clone());
                            None
                        }
                    }
                }
                None => {
                    run_index.push(index);
                    to_run.push(envelope.command.clone());
                    None
                }
            };
            plan.push(answer);
        }

        let mut state = LedgerState {
            accounts: locked.accounts,
            daily_used: locked.daily_used,
            transfer_ids: locked.transfer_ids,
            transfer_ids_used: 0,
            transfers: locked.transfers,
            shares: locked.shares,
        };
        let (results, effects) = apply(&mut state, &context, &to_run);

        let mut new_keys: Vec<(KeyId, KeyRecord)> = Vec::new();
        for (position, result) in run_index.iter().zip(results) {
            let envelope = &batch[*position];
            if let Some(idempotency) = &envelope.idempotency {
                let record =
                    KeyRecord { fingerprint: idempotency.fingerprint.clone(), response: (idempotency.render)(&result) };
                let id = (idempotency.user_id, idempotency.key.clone());
                known_keys.insert(id.clone(), record.clone());
                new_keys.push((id, record));
            }
            plan[*position] = Some(Answer::Applied(result));
        }
        let applied = started.elapsed();
        let entries = super::statements::entries(&state, &effects);
        store::write_and_commit(client, now, &state, &effects, &entries, &new_keys).await?;
        tracing::debug!(
            size = batch.len(),
            read_us = read.as_micros() as u64,
            apply_us = (applied - read).as_micros() as u64,
            write_commit_us = (started.elapsed() - applied).as_micros() as u64,
            "ledger batch timing"
        );

        // Repeats within the batch, answered from what their first occurrence stored.
        Ok(plan
            .into_iter()
            .zip(batch)
            .map(|(answer, envelope)| match (answer, &envelope.idempotency) {
                (Some(answer), _) => answer,
                (None, Some(idempotency)) => match known_keys.get(&(idempotency.user_id, idempotency.key.clone())) {
                    Some(record) if same_request(record, &idempotency.fingerprint) => {
                        Answer::Replayed(record.response.clone())
                    }
                    _ => Answer::KeyReused,
                },
                (None, None) => Answer::Applied(Err(CommandError::InvalidState("command was not run"))),
            })
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
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
