//! The pure scheduler: which queued commands a writer may take for its next batch. Each command
//! names the rows it may change (its [`Claim`]s); a batch takes only commands whose claims no
//! running batch holds, and the others wait, oldest first. No I/O here but the queue's
//! receiving end, so the rules are tested without a database.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex, Notify, OwnedSemaphorePermit};

use super::{Answer, Idempotency, LedgerError};
use crate::domain::accounts::{AccountId, UserId, EXTERNAL_ACCOUNT_ID};
use crate::domain::ids::TransferId;
use crate::ledger::apply::Command;

/// A submitted command on its way through the writer, with where to send its answer.
pub(super) struct Envelope {
    pub(super) command: Command,
    pub(super) idempotency: Option<Idempotency>,
    pub(super) reply: oneshot::Sender<Result<Answer, LedgerError>>,
    /// Lock the external account for this command too (it asked for a top-up once already).
    pub(super) external: bool,
    /// The command's place in the process's capacity, from its submission until the envelope
    /// is dropped (answered, or its caller gone): queued, waiting or in a batch, it counts.
    pub(super) _held: OwnedSemaphorePermit,
}

/// A row a command may change; two batches that hold the same claim never run at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Claim {
    Account(AccountId),
    /// The user's daily top-up counters, whichever day.
    Daily(UserId),
    Transfer(TransferId),
    /// Every settlement's shares: one batch that pays shares at a time, taking every payment
    /// waiting, as transfers to one hot account share a batch. Batches read shares through their
    /// keys' index pages, and a paid share's new row version lands in those pages (`status` is in
    /// a partial index's predicate, so the update is never HOT): two share-paying batches at
    /// once, on different settlements, failed each other under SERIALIZABLE, and every retry ran
    /// alone.
    Shares,
    Key(UserId, String),
}

impl Envelope {
    /// The accounts its batch locks for it.
    pub(super) fn accounts(&self) -> Vec<AccountId> {
        let mut accounts = self.command.accounts();
        if self.external && !accounts.contains(&EXTERNAL_ACCOUNT_ID) {
            accounts.push(EXTERNAL_ACCOUNT_ID);
        }
        accounts
    }

    pub(super) fn claims(&self) -> Vec<Claim> {
        let mut claims: Vec<Claim> = self.accounts().into_iter().map(Claim::Account).collect();
        claims.extend(self.command.charging_user().map(Claim::Daily));
        claims.extend(self.command.transfer_to_lock().map(Claim::Transfer));
        claims.extend(self.command.settlement_to_lock().map(|_| Claim::Shares));
        claims.extend(self.idempotency.as_ref().map(|key| Claim::Key(key.user_id, key.key.clone())));
        claims
    }
}

/// Commands taken for one batch, with the claims they hold until it ends.
pub(super) struct Batch {
    pub(super) envelopes: Vec<Envelope>,
    pub(super) claims: Vec<Claim>,
}

/// The queue's receiving end. Writers take turns at it. The queue needs no bound of its own:
/// what it holds is bounded with everything else the process holds (see [`LedgerWriter`]).
pub(super) struct Intake {
    pub(super) receiver: mpsc::UnboundedReceiver<Envelope>,
    pub(super) closed: bool,
}

/// What running batches hold, and the commands waiting for it.
#[derive(Default)]
pub(super) struct Running {
    pub(super) claimed: HashSet<Claim>,
    /// Commands whose claims a running batch holds, oldest first.
    pub(super) waiting: VecDeque<Envelope>,
}

impl Running {
    /// Takes, up to `max`, the waiting commands and then the queued ones whose claims are free,
    /// and claims them; commands that conflict with a running batch wait.
    pub(super) fn take(&mut self, intake: &mut Intake, max: usize) -> Batch {
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
        assert!(batch.envelopes.len() <= max, "a batch of {} commands, above {max}", batch.envelopes.len());
        debug_assert!(
            batch.claims.iter().all(|claim| !self.claimed.contains(claim)),
            "a batch took a claim a running batch holds"
        );
        self.claimed.extend(batch.claims.iter().cloned());
        batch
    }

    /// Ends a batch: its claims are free again, and commands it hands back wait first in line.
    pub(super) fn release(&mut self, claims: &[Claim], again: Vec<Envelope>) {
        // Released twice, or by another batch than the one that took it: two batches held it.
        debug_assert!(
            claims.iter().all(|claim| self.claimed.contains(claim)),
            "a batch released a claim it did not hold"
        );
        for claim in claims {
            self.claimed.remove(claim);
        }
        for envelope in again.into_iter().rev() {
            self.waiting.push_front(envelope);
        }
    }
}

/// Shared by the writer tasks of one process.
pub(super) struct Schedule {
    pub(super) intake: Mutex<Intake>,
    pub(super) running: std::sync::Mutex<Running>,
    /// Signalled when a batch ends.
    pub(super) released: Notify,
    /// Held from taking a batch until its write is sent: while one batch's COMMIT waits for
    /// its WAL flush, the next writer reads and applies its own, which has grown meanwhile.
    pub(super) turn: Arc<tokio::sync::Semaphore>,
}

impl Schedule {
    pub(super) fn new(receiver: mpsc::UnboundedReceiver<Envelope>) -> Self {
        Schedule {
            intake: Mutex::new(Intake { receiver, closed: false }),
            running: std::sync::Mutex::new(Running::default()),
            released: Notify::new(),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    pub(super) fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // Held for in-memory bookkeeping only, never across an await; what runs under it panics
        // only on a broken invariant of the schedule (two batches holding one claim).
        self.running.lock().expect("ledger schedule lock")
    }

    /// Ends a batch (see [`Running::release`]) and wakes the writers waiting for its claims.
    pub(super) fn finish(&self, claims: &[Claim], again: Vec<Envelope>) {
        self.running().release(claims, again);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Amount;
    use tokio::sync::Semaphore;

    /// A transfer of 1 KRW, ids given raw.
    fn transfer(user_id: i64, from: i64, to: i64) -> (Envelope, oneshot::Receiver<Result<Answer, LedgerError>>) {
        let (reply, answer) = oneshot::channel();
        let command = Command::Transfer {
            user_id: UserId::new(user_id),
            from_account_id: AccountId::new(from),
            to_account_id: AccountId::new(to),
            amount: Amount::parse(1).unwrap(),
            display_name: None,
            memo: None,
        };
        let held = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        (Envelope { command, idempotency: None, reply, external: false, _held: held }, answer)
    }

    fn from_accounts(batch: &Batch) -> Vec<i64> {
        batch.envelopes.iter().map(|envelope| envelope.command.accounts()[0].get()).collect()
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
        assert!(!running.claimed.contains(&Claim::Account(AccountId::new(102))));
        drop(sender);
        let rest = running.take(&mut intake, 2);
        assert_eq!(from_accounts(&rest), vec![104]);
        assert!(intake.closed);
    }

    #[test]
    fn share_payments_of_any_settlements_wait_for_the_running_one_then_share_a_batch() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut intake = Intake { receiver, closed: false };
        let mut running = Running::default();
        let mut answers = Vec::new();
        let mut pay = |user: i64, settlement: i64, from: i64, to: i64| {
            let (reply, answer) = oneshot::channel();
            let command = Command::PayShare {
                user_id: UserId::new(user),
                settlement_id: crate::domain::ids::SettlementId::new(settlement),
                from_account_id: AccountId::new(from),
                to_account_id: AccountId::new(to),
                memo: None,
            };
            let held = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            sender.send(Envelope { command, idempotency: None, reply, external: false, _held: held }).ok().unwrap();
            answers.push(answer);
        };
        pay(1, 10, 101, 201);
        let first = running.take(&mut intake, 10);
        assert_eq!(from_accounts(&first), vec![101]);
        // Disjoint accounts, users and settlements: they still wait for the running share batch.
        pay(2, 11, 102, 202);
        pay(3, 12, 103, 203);
        pay(4, 12, 104, 203);
        assert!(running.take(&mut intake, 10).envelopes.is_empty());
        running.release(&first.claims, Vec::new());
        assert_eq!(from_accounts(&running.take(&mut intake, 10)), vec![102, 103, 104]);
    }

    /// Two batches holding one claim: the second release finds it gone.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "did not hold")]
    fn a_claim_released_twice_trips_the_assertion_in_debug_builds() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut intake = Intake { receiver, closed: false };
        let mut running = Running::default();
        let (envelope, _answer) = transfer(1, 101, 102);
        sender.send(envelope).ok().unwrap();
        let batch = running.take(&mut intake, 10);
        running.release(&batch.claims, Vec::new());
        running.release(&batch.claims, Vec::new());
    }
}
