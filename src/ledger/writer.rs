//! The batched ledger writer: a bounded queue, a few writer tasks, one short SERIALIZABLE
//! transaction per batch, whole-batch retry on serialization failures (COMMIT included).
//!
//! Batches of one process run at once only when they touch disjoint rows: each command names
//! the rows it may change (its [`Claim`]s), and a writer takes only commands whose claims no
//! running batch holds; the others wait, oldest first, for the next batch. So a batch never
//! waits on another's row lock (which under SERIALIZABLE would end in a serialization
//! failure), batches on disjoint accounts share PostgreSQL's cores and WAL flushes, and batches
//! on one hot account still follow each other, each one large. Batches take the database gate
//! (`ledger_batch_gate`) in ROW SHARE mode, which they share with each other and with writers
//! of notifications outside a batch, and which waits for the jobs that take it in EXCLUSIVE
//! mode. A retried batch (it met another process's batch, or a key recorded meanwhile) takes
//! the gate in EXCLUSIVE mode: it then runs alone and its snapshot follows every batch before it.
//!
//! # Lock order
//!
//! Every transaction that takes the gate takes it before any row lock, so that none ever holds
//! a row while it waits at the gate for a transaction that waits for that row:
//!
//! 1. The gate. Batches take it in ROW SHARE mode (EXCLUSIVE when retried), and so do writers
//!    of notifications outside a batch (`crate::store::notifications::lock_recipients`); jobs
//!    take it in EXCLUSIVE mode, through `crate::store::tx::wait_at_ledger_gate`, as their
//!    first lock, chunk by chunk. Nothing on a request path takes it in EXCLUSIVE mode, since
//!    that would stop every batch of every process.
//! 2. Accounts, in id order. A batch locks, all in one flight after the gate
//!    ([`store::begin_and_lock`]): accounts, daily counters, idempotency keys, transfers,
//!    settlement shares, each list in key order; batches of different processes may meet on a
//!    row, but always in this order. A writer of notifications outside a batch locks its
//!    recipients' main accounts (FOR NO KEY UPDATE), in id order, right after the gate: that
//!    lock is what puts each user's notification ids in commit order (see
//!    `crate::store::notifications`). A batch that waits for it is not failed for it: the lock
//!    changes no row version.
//! 3. Daily counters, idempotency keys, transfers, settlement shares, in that order, after the
//!    accounts.
//!
//! The jobs lock their rows only once they hold the gate in EXCLUSIVE mode, when no batch and
//! no writer of notifications holds any: interest (the savings accounts due, then the interest
//! account), pending expiry (the transfers due, then their accounts), reminders (the transfers
//! due, then their receivers' main accounts); the history seeder holds it while it takes entry
//! ids. Two holders of the EXCLUSIVE mode never run at once, so their own row orders do not
//! matter.
//!
//! Settlement creation takes the gate and its participants' accounts last
//! (`crate::store::notifications::insert_all`), but what it holds by then is only its new rows,
//! which no batch or job can see yet, and key-share locks on users, which none of them
//! conflicts with. A writer of notifications that must lock a row of step 3 (a transfer, a
//! share) calls `lock_recipients` before it. Jobs that move money through the writer
//! (installments) hold no lock a batch takes while they wait for their commands; the job
//! runner's advisory lock and `job_runs` rows are nothing a batch takes.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Datelike;
use chrono_tz::Tz;
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::apply::{apply, BatchContext, Command, CommandError, LedgerState, Outcome};
use super::store;
use crate::clock::Clock;
use crate::config::LedgerConfig;
use crate::domain::accounts::{AccountId, UserId, EXTERNAL_ACCOUNT_ID};
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
    /// The process holds as many commands as it may (`LedgerConfig::queue_capacity`): the
    /// caller should come back later.
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
    /// Lock the external account for this command too (it asked for a top-up once already).
    external: bool,
    /// The command's place in the process's capacity, from its submission until the envelope
    /// is dropped (answered, or its caller gone): queued, waiting or in a batch, it counts.
    _held: OwnedSemaphorePermit,
}

/// A row a command may change; two batches that hold the same claim never run at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Claim {
    Account(AccountId),
    /// The user's daily top-up counters, whichever day.
    Daily(UserId),
    Transfer(i64),
    Settlement(i64),
    Key(UserId, String),
}

impl Envelope {
    /// The accounts its batch locks for it.
    fn accounts(&self) -> Vec<AccountId> {
        let mut accounts = self.command.accounts();
        if self.external && !accounts.contains(&EXTERNAL_ACCOUNT_ID) {
            accounts.push(EXTERNAL_ACCOUNT_ID);
        }
        accounts
    }

    fn claims(&self) -> Vec<Claim> {
        let mut claims: Vec<Claim> = self.accounts().into_iter().map(Claim::Account).collect();
        claims.extend(self.command.charging_user().map(Claim::Daily));
        claims.extend(self.command.transfer_to_lock().map(Claim::Transfer));
        claims.extend(self.command.settlement_to_lock().map(Claim::Settlement));
        claims.extend(self.idempotency.as_ref().map(|key| Claim::Key(key.user_id, key.key.clone())));
        claims
    }
}

/// Commands taken for one batch, with the claims they hold until it ends.
struct Batch {
    envelopes: Vec<Envelope>,
    claims: Vec<Claim>,
}

/// The queue's receiving end. Writers take turns at it. The queue needs no bound of its own:
/// what it holds is bounded with everything else the process holds (see [`LedgerWriter`]).
struct Intake {
    receiver: mpsc::UnboundedReceiver<Envelope>,
    closed: bool,
}

/// What running batches hold, and the commands waiting for it.
#[derive(Default)]
struct Running {
    claimed: HashSet<Claim>,
    /// Commands whose claims a running batch holds, oldest first.
    waiting: VecDeque<Envelope>,
}

impl Running {
    /// Takes, up to `max`, the waiting commands and then the queued ones whose claims are free,
    /// and claims them; commands that conflict with a running batch wait.
    fn take(&mut self, intake: &mut Intake, max: usize) -> Batch {
        let mut batch = Batch { envelopes: Vec::new(), claims: Vec::new() };
        let mut still_waiting = VecDeque::with_capacity(self.waiting.len());
        let offer = |envelope: Envelope, batch: &mut Batch, waiting: &mut VecDeque<Envelope>| {
            // Callers that gave up (timed out, disconnected) must not have money moved for them.
            if envelope.reply.is_closed() {
                return;
            }
            let claims = envelope.claims();
            if batch.envelopes.len() < max && claims.iter().all(|claim| !self.claimed.contains(claim)) {
                batch.claims.extend(claims);
                batch.envelopes.push(envelope);
            } else {
                waiting.push_back(envelope);
            }
        };
        while let Some(envelope) = self.waiting.pop_front() {
            offer(envelope, &mut batch, &mut still_waiting);
        }
        while batch.envelopes.len() < max && !intake.closed {
            match intake.receiver.try_recv() {
                Ok(envelope) => offer(envelope, &mut batch, &mut still_waiting),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => intake.closed = true,
            }
        }
        self.waiting = still_waiting;
        self.claimed.extend(batch.claims.iter().cloned());
        batch
    }

    /// Ends a batch: its claims are free again, and commands it hands back wait first in line.
    fn release(&mut self, claims: &[Claim], again: Vec<Envelope>) {
        for claim in claims {
            self.claimed.remove(claim);
        }
        for envelope in again.into_iter().rev() {
            self.waiting.push_front(envelope);
        }
    }
}

/// Shared by the writer tasks of one process.
struct Schedule {
    intake: Mutex<Intake>,
    running: std::sync::Mutex<Running>,
    /// Signalled when a batch ends.
    released: Notify,
    /// Held from taking a batch until its write is sent: while one batch's COMMIT waits for
    /// its WAL flush, the next writer reads and applies its own, which has grown meanwhile.
    turn: Arc<tokio::sync::Semaphore>,
}

impl Schedule {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // Held for in-memory bookkeeping only, never across an await or anything that panics.
        self.running.lock().expect("ledger schedule lock")
    }

    /// Ends a batch (see [`Running::release`]) and wakes the writers waiting for its claims.
    fn finish(&self, claims: &[Claim], again: Vec<Envelope>) {
        self.running().release(claims, again);
        self.released.notify_waiters();
    }
}

/// Returns true when a repeat of `record`'s key carries the same request.
fn same_request(record: &KeyRecord, fingerprint: &[u8]) -> bool {
    record.fingerprint == fingerprint
}

/// The handle callers submit commands through. Cheap to clone.
///
/// A process holds at most `LedgerConfig::queue_capacity` commands, wherever they are: in the
/// queue, waiting for rows a running batch has claimed (however long that batch takes), or in a
/// batch. Each takes a permit when it is submitted and gives it back when it is answered; with
/// none left a command is refused at once ([`LedgerError::Busy`], 503 with Retry-After) instead
/// of adding to the memory and the wait of those already in.
#[derive(Clone)]
pub struct LedgerWriter {
    sender: mpsc::UnboundedSender<Envelope>,
    capacity: Arc<Semaphore>,
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
    schedule: Arc<Schedule>,
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
        let (sender, receiver) = mpsc::unbounded_channel();
        let capacity = Arc::new(Semaphore::new(config.queue_capacity));
        let schedule = Arc::new(Schedule {
            intake: Mutex::new(Intake { receiver, closed: false }),
            running: std::sync::Mutex::new(Running::default()),
            released: Notify::new(),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
        });
        let tasks = (0..config.writers)
            .map(|_| {
                let worker = Worker {
                    pool: pool.clone(),
                    connections: connections.clone(),
                    clock: clock.clone(),
                    settings: settings.clone(),
                    config: config.clone(),
                    metrics: metrics.clone(),
                    schedule: schedule.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        (LedgerWriter { sender, capacity, metrics }, WriterTasks(tasks))
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
        let held = self.capacity.clone().try_acquire_owned().map_err(|_| {
            self.metrics.ledger_queue_full.add(1);
            LedgerError::Busy
        })?;
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Envelope { command, idempotency, reply, external: false, _held: held })
            .map_err(|_| LedgerError::Unavailable)?;
        answer.await.unwrap_or(Err(LedgerError::Unavailable))
    }
}

impl Worker {
    async fn run(self) {
        loop {
            let Ok(turn) = self.schedule.turn.clone().acquire_owned().await else { return };
            let Some(batch) = self.next_batch().await else { return };
            let again = self.process(batch.envelopes, turn).await;
            self.schedule.finish(&batch.claims, again);
        }
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

    /// Runs one batch (never empty: see [`Running::take`]) and answers its callers, except
    /// those of commands that turned out to need the external account: those are handed back
    /// to run again with it.
    async fn process(&self, batch: Vec<Envelope>, turn: tokio::sync::OwnedSemaphorePermit) -> Vec<Envelope> {
        let mut turn = Some(turn);
        let mut attempt = 1;
        let outcome = loop {
            match self.attempt(&batch, attempt > 1, &mut turn).await {
                Ok(answers) => break Ok(answers),
                Err(error) if attempt < self.config.attempts_max && error.is_missing_partition() => {
                    let today = self.business_date();
                    if let Err(error) = partitions::ensure_around(&self.pool, today).await {
                        tracing::warn!(%error, "could not create partitions");
                    }
                    // A caught-up installment counts against the limit of its own date, which
                    // may lie in a month long before today's partitions.
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
                Err(error) if attempt < self.config.attempts_max && error.may_retry() => {
                    self.metrics.ledger_batch_retries.add(1);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => break Err(error),
            }
            attempt += 1;
        };
        let mut again = Vec::new();
        match outcome {
            Ok(answers) => {
                let size = answers.iter().filter(|answer| answer.is_some()).count() as u64;
                self.metrics.ledger_batches.add(1);
                self.metrics.ledger_batch_size.observe(batch.len() as u64);
                self.metrics.ledger_commands.add(size);
                tracing::debug!(size = batch.len(), attempts = attempt, "ledger batch committed");
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
            }
            Err(error) => {
                self.metrics.ledger_batches_failed.add(1);
                tracing::error!(%error, size = batch.len(), attempts = attempt, "ledger batch failed");
                for envelope in batch {
                    let _ = envelope.reply.send(Err(LedgerError::Unavailable));
                }
            }
        }
        again
    }

    /// One attempt: lock, load, apply, write, commit. Nothing is sent to callers here, so a
    /// failed attempt (COMMIT included) can be repeated from scratch. `alone`: take the gate in
    /// EXCLUSIVE mode. An answer of `None` means: run the command again with the external
    /// account locked (nothing of it was written).
    async fn attempt(
        &self,
        batch: &[Envelope],
        alone: bool,
        turn: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Vec<Option<Answer>>, AttemptError> {
        let client = self.connections.get().await.map_err(|error| AttemptError::Pool(error.to_string()))?;
        match self.attempt_on(&client, batch, alone, turn).await {
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
        alone: bool,
        turn: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Vec<Option<Answer>>, tokio_postgres::Error> {
        let now = self.clock.now();
        let context = BatchContext {
            now,
            business_date: business_date(now, self.settings.tz),
            daily_charge_limit_krw: self.settings.daily_charge_limit_krw,
            tz: self.settings.tz,
        };
        let account_ids: BTreeSet<_> = batch.iter().flat_map(Envelope::accounts).collect();
        let closing: BTreeSet<_> = batch.iter().filter_map(|envelope| envelope.command.closing_account()).collect();
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
                alone,
                account_ids: &account_ids,
                closing: &closing,
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
        let mut again: HashSet<usize> = HashSet::new();
        let mut again_keys: HashSet<KeyId> = HashSet::new();
        for (position, result) in run_index.iter().zip(results) {
            let envelope = &batch[*position];
            if result == Err(CommandError::NeedsExternalAccount) && !envelope.external {
                again.insert(*position);
                if let Some(idempotency) = &envelope.idempotency {
                    again_keys.insert((idempotency.user_id, idempotency.key.clone()));
                }
                continue;
            }
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
        // The next writer may take its batch while this one writes and waits for its flush.
        drop(turn.take());
        store::write_and_commit(client, now, &state, &effects, &entries, &new_keys).await?;
        tracing::debug!(
            size = batch.len(),
            read_us = read.as_micros() as u64,
            apply_us = (applied - read).as_micros() as u64,
            write_commit_us = (started.elapsed() - applied).as_micros() as u64,
            "ledger batch timing"
        );

        // Repeats within the batch, answered from what their first occurrence stored (or run
        // again with it).
        Ok(plan
            .into_iter()
            .zip(batch)
            .enumerate()
            .map(|(position, (answer, envelope))| match (answer, &envelope.idempotency) {
                _ if again.contains(&position) => None,
                (Some(answer), _) => Some(answer),
                (None, Some(idempotency)) => {
                    let id = (idempotency.user_id, idempotency.key.clone());
                    if again_keys.contains(&id) {
                        return None;
                    }
                    Some(match known_keys.get(&id) {
                        Some(record) if same_request(record, &idempotency.fingerprint) => {
                            Answer::Replayed(record.response.clone())
                        }
                        _ => Answer::KeyReused,
                    })
                }
                (None, None) => Some(Answer::Applied(Err(CommandError::InvalidState("command was not run")))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Amount;

    fn transfer(
        user_id: UserId,
        from: AccountId,
        to: AccountId,
    ) -> (Envelope, oneshot::Receiver<Result<Answer, LedgerError>>) {
        let (reply, answer) = oneshot::channel();
        let command = Command::Transfer {
            user_id,
            from_account_id: from,
            to_account_id: to,
            amount: Amount::parse(1).unwrap(),
            display_name: None,
            memo: None,
        };
        let held = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        (Envelope { command, idempotency: None, reply, external: false, _held: held }, answer)
    }

    fn from_accounts(batch: &Batch) -> Vec<AccountId> {
        batch.envelopes.iter().map(|envelope| envelope.command.accounts()[0]).collect()
    }

    #[test]
    fn batches_running_at_once_never_share_a_row_and_waiting_commands_go_first() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut intake = Intake { receiver, closed: false };
        let mut running = Running::default();
        let mut answers = Vec::new();
        for (user, from, to) in [(1, 101, 102), (3, 103, 104)] {
            let (envelope, answer) = transfer(user, from, to);
            sender.send(envelope).ok().unwrap();
            answers.push(answer);
        }
        let first = running.take(&mut intake, 10);
        assert_eq!(from_accounts(&first), vec![101, 103]);

        // Account 102 and user 3 are claimed by the running batch; 105 → 106 is free.
        for (user, from, to) in [(5, 105, 102), (3, 107, 108), (6, 106, 109)] {
            let (envelope, answer) = transfer(user, from, to);
            sender.send(envelope).ok().unwrap();
            answers.push(answer);
        }
        let second = running.take(&mut intake, 10);
        assert_eq!(from_accounts(&second), vec![106]);
        assert_eq!(running.waiting.len(), 2);
        assert!(running.take(&mut intake, 10).envelopes.is_empty(), "nothing else is free");

        // The first batch ends and hands one command back: it goes first, then the waiting ones.
        let mut first = first;
        let again = first.envelopes.remove(1);
        running.release(&first.claims, vec![again]);
        let third = running.take(&mut intake, 10);
        assert_eq!(from_accounts(&third), vec![103, 105, 107]);
        assert!(running.waiting.is_empty());
        running.release(&second.claims, Vec::new());
        running.release(&third.claims, Vec::new());
        assert!(running.claimed.is_empty());
    }

    #[test]
    fn commands_whose_callers_left_are_dropped_and_the_batch_size_is_kept() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut intake = Intake { receiver, closed: false };
        let mut running = Running::default();
        let mut kept = Vec::new();
        for user in 1..=4 {
            let (envelope, answer) = transfer(user, 100 + user, 200 + user);
            sender.send(envelope).ok().unwrap();
            if user == 2 {
                drop(answer);
            } else {
                kept.push(answer);
            }
        }
        let batch = running.take(&mut intake, 2);
        assert_eq!(from_accounts(&batch), vec![101, 103]);
        assert!(!running.claimed.contains(&Claim::Account(102)));
        drop(sender);
        let rest = running.take(&mut intake, 2);
        assert_eq!(from_accounts(&rest), vec![104]);
        assert!(intake.closed);
    }
}
