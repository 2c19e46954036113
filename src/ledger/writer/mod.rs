//! The batched ledger writer: a bounded queue, a few writer tasks, one short SERIALIZABLE
//! transaction per batch, whole-batch retry on serialization failures (COMMIT included).
//!
//! Batches of one process run at once only when they touch disjoint rows: each command names
//! the rows it may change (its claims, `schedule::Claim`), and a writer takes only commands
//! whose claims no running batch holds; the others wait, oldest first, for the next batch. So a
//! batch never waits on another's row lock (which under SERIALIZABLE would end in a
//! serialization failure), batches on disjoint accounts share PostgreSQL's cores and WAL
//! flushes, and batches on one hot account still follow each other, each one large. Batches
//! take the database gate (`ledger_batch_gate`) in ROW SHARE mode, which they share with each
//! other and with writers of notifications outside a batch, and which waits for the jobs that
//! take it in EXCLUSIVE mode. A retried batch (a serialization failure, a key recorded
//! meanwhile) takes the gate in EXCLUSIVE mode: it then runs alone and its snapshot follows
//! every batch before it.
//!
//! Batches of different processes are kept apart the same way, by the database: before its
//! transaction a batch claims its accounts with session advisory locks, in id order, waiting
//! for another process's batch that holds one, and releases them after its COMMIT
//! ([`crate::ledger::store::begin_and_lock`]). Its snapshot is thus taken after every batch on
//! its accounts committed, and its row locks find them free; had it waited for a row lock
//! inside its snapshot, it would have failed its serialization check and been retried alone.
//! Processes also share the database's writers ([`WriterShare`]): each runs its part of
//! `LedgerConfig::writers` batches at once, so that a database runs a few large batches
//! however many processes serve, not a few per process.
//! Idempotency keys are read before the transaction too, outside its snapshot: looking up a key
//! nobody recorded would predicate-lock a page of the keys' index where batches on other users
//! insert theirs, and make them fail each other.
//!
//! # Lock order
//!
//! Every transaction that takes the gate takes it before any row lock, so that none ever holds
//! a row while it waits at the gate for a transaction that waits for that row:
//!
//! 0. The claims (advisory locks on account ids, in id order), taken by batches only, before
//!    their transaction: nothing that holds the gate or a row lock waits for one.
//! 1. The gate. Batches take it in ROW SHARE mode (EXCLUSIVE when retried), and so do writers
//!    of notifications outside a batch (`crate::store::notifications::insert_all`); jobs
//!    take it in EXCLUSIVE mode, through `crate::store::tx::wait_at_ledger_gate`, as their
//!    first lock, chunk by chunk. Nothing on a request path takes it in EXCLUSIVE mode, since
//!    that would stop every batch of every process.
//! 2. Daily counters, transfers, settlement shares, in that order, each list in key order: a
//!    batch locks them in one flight after the gate ([`crate::ledger::store::begin_and_lock`]);
//!    batches of different processes may meet on a row (a transfer, a share), but always in
//!    this order. The idempotency keys a batch records are locked only by their insert.
//! 3. Accounts, by the batch's write, which updates them: a batch reads its accounts without
//!    locking them. Its claims keep every other batch off them, and nothing else updates an
//!    account but the jobs, while they hold the gate in EXCLUSIVE mode; a row lock taken as
//!    the accounts were read only repeated that, for a lock record per account (and an update
//!    committed after the batch's snapshot would fail its write as it failed the lock: a
//!    serialization failure, and a retry).
//! 4. Recipient locks (transaction-level advisory locks per user, in user id order: see
//!    `crate::store::notifications`), last: a batch takes those of the users it notifies in
//!    the statement that inserts its notifications, after its write and just before its
//!    COMMIT, and every other writer of notifications in the same way, after its own row locks
//!    (a decline: the settlement's shares). They are what puts
//!    each user's notification ids in commit order. Two batches never take the same one (a
//!    batch notifies only owners of main accounts it locked); a batch that waits for one held
//!    by a split bill is not failed for it, since the split bill writes nothing the batch read.
//!
//! The jobs lock their rows only once they hold the gate in EXCLUSIVE mode, when no batch and
//! no writer of notifications holds any: interest (the savings accounts due, then the interest
//! account), pending expiry (the transfers due, then their accounts), reminders (the transfers
//! due, then their receivers' recipient locks); the history seeder holds it while it takes
//! entry ids. Two holders of the EXCLUSIVE mode never run at once, so their own row orders do
//! not matter.
//!
//! Settlement creation takes the gate and its participants' recipient locks last
//! (`crate::store::notifications::insert_all`), when what it holds is only its new rows, which
//! no batch or job can see yet, the requester's user row, and key-share locks on users, which
//! none of them conflicts with: it never waits for a batch that debits a participant, and a
//! batch waits for it only to notify a participant, during the creation's last statements.
//! Jobs that move money through the writer (installments) hold no lock a batch takes while
//! they wait for their commands; the job runner's advisory lock and `job_runs` rows are nothing
//! a batch takes.
//!
//! # Files
//!
//! - this module: the handle callers submit through ([`LedgerWriter`]) and what they get back.
//! - `schedule`: the pure scheduler: which queued commands a writer may take for its next batch
//!   (their claims), and what waits.
//! - `worker`: a writer task's loop: take a batch, run it (retrying whole), answer its callers.
//! - `attempt`: one attempt at a batch: lock, load, apply, write, commit.
//! - `keys`: the key plan: which commands of a batch run, and how repeats of an idempotency
//!   key are answered.

mod attempt;
mod keys;
mod schedule;
mod worker;

use std::sync::Arc;

use chrono_tz::Tz;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use super::apply::{Command, CommandError, Outcome};
use crate::clock::Clock;
use crate::config::LedgerConfig;
use crate::store::idempotency::StoredResponse;
use crate::telemetry::Metrics;
use schedule::{Envelope, Schedule};
use worker::Worker;

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
// Moved once per command, from the writer to its caller: boxing the outcome would cost an
// allocation per command for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// The command ran now; its response was stored under the key.
    Applied(Result<Outcome, CommandError>),
    /// The key had been used with the same request: the first response, unchanged.
    Replayed(StoredResponse),
    /// The key had been used with a different request.
    KeyReused,
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
    share: WriterShare,
}

/// How many of the process's writer tasks may run a batch at once: its share of the database's
/// writers. A database runs a few batches at once well, not many: each batch pays a fixed cost
/// (its statements, its COMMIT), and batches are larger the fewer run at once. A process alone
/// on its database runs all of its `LedgerConfig::writers`; serving processes that share one
/// (counted by `crate::store::processes`) run `writers / processes` each, at least one, so that
/// two processes run as many batches at once as one did, not twice as many half as large.
///
/// Held by the writer tasks and by whoever counts the processes; cheap to clone.
#[derive(Clone)]
pub struct WriterShare {
    writers: usize,
    active: Arc<watch::Sender<usize>>,
    metrics: Arc<Metrics>,
}

impl WriterShare {
    fn new(writers: usize, metrics: Arc<Metrics>) -> Self {
        let share = WriterShare { writers, active: Arc::new(watch::Sender::new(writers)), metrics };
        share.share_among(1);
        share
    }

    /// `processes` serving processes share the database (this one included): this process runs
    /// `writers / processes` batches at once, at least one. Returns that number.
    pub fn share_among(&self, processes: usize) -> usize {
        let active = (self.writers / processes.max(1)).max(1);
        let before = self.active.send_replace(active);
        if before != active {
            tracing::info!(processes, writers = active, of = self.writers, "ledger writers shared among processes");
        }
        self.metrics.ledger_writers.set(i64::try_from(active).unwrap_or(i64::MAX));
        active
    }

    /// Batches this process runs at once.
    pub fn active(&self) -> usize {
        *self.active.borrow()
    }

    /// Lets every writer task run (the queue is closed: each must see that to end).
    fn open_all(&self) {
        self.active.send_replace(usize::MAX);
    }
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
        let schedule = Arc::new(Schedule::new(receiver));
        let share = WriterShare::new(config.writers, metrics.clone());
        let tasks = (0..config.writers)
            .map(|index| {
                let worker = Worker {
                    index,
                    share: share.clone(),
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
        (LedgerWriter { sender, capacity, metrics, share }, WriterTasks(tasks))
    }

    /// The handle that sets how many batches this process runs at once.
    pub fn share(&self) -> WriterShare {
        self.share.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_on_one_database_share_its_writers_each_keeping_one() {
        let share = WriterShare::new(4, Metrics::new());
        assert_eq!(share.active(), 4);
        assert_eq!([1, 2, 3, 4, 9].map(|processes| share.share_among(processes)), [4, 2, 1, 1, 1]);
        // A count that went wrong (no process, not even this one) leaves this one all of them.
        assert_eq!(share.share_among(0), 4);
        assert_eq!(share.active(), 4);
    }
}
