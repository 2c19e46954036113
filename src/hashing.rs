//! Password hashing, bounded. Each argon2 hash takes `m_cost` of memory (19 MiB by default)
//! and a core for tens of milliseconds; unbounded, a burst of sign-ups or log-ins runs
//! hundreds at once, each on its own blocking thread with its own allocation, and holds
//! gigabytes. Here at most `concurrency` hashes run at once (each on a blocking thread, with
//! the memory of a slot that the next hash reuses), at most `queue` more wait for a slot in
//! arrival order (tokio's semaphore is fair), and beyond that `admit` refuses at once: the
//! caller answers 503 `unavailable` with Retry-After. A request that gives up while waiting
//! leaves the queue; one that gives up while its hash runs keeps its place until the hash
//! ends, so no more than `concurrency` ever run. When the last admitted hash ends, the slots'
//! memory is freed: an idle server holds none of it.
//!
//! Every place that hashes or verifies a password goes through here: sign-up, log-in and the
//! benchmark seed.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::domain::names::Password;
use crate::domain::passwords::{self, HashCost, HashMemory};

pub use crate::config::{HashingLimits, CONCURRENCY_MAX, QUEUE_PER_SLOT_DEFAULT};

/// Every slot is taken and the queue is full.
#[derive(Debug, thiserror::Error)]
#[error("too many sign-ups and log-ins in flight; retry shortly")]
pub struct HashingBusy;

/// The bounded hashing gate of a process. Cheap to clone.
#[derive(Clone)]
pub struct Hashing {
    inner: Arc<Inner>,
}

struct Inner {
    cost: HashCost,
    limits: HashingLimits,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Hashes running or waiting.
    admitted: usize,
    /// Slot memory between two hashes of one busy period.
    spare: Vec<HashMemory>,
}

impl Hashing {
    /// New hashes get `cost`; stored hashes are verified with their own.
    pub fn new(cost: HashCost, limits: HashingLimits) -> Self {
        let limits = HashingLimits { concurrency: limits.concurrency.max(1), ..limits };
        let inner = Inner {
            cost,
            limits,
            slots: Arc::new(Semaphore::new(limits.concurrency)),
            state: Mutex::new(State::default()),
        };
        Hashing { inner: Arc::new(inner) }
    }

    /// A place among the hashes running or waiting, taken before any other work of the
    /// request (a refused log-in costs no query); `HashingBusy` when all are taken.
    pub fn admit(&self) -> Result<Ticket, HashingBusy> {
        let mut state = self.inner.state.lock().expect("hashing state");
        if state.admitted >= self.inner.limits.concurrency + self.inner.limits.queue {
            return Err(HashingBusy);
        }
        state.admitted += 1;
        Ok(Ticket { inner: self.inner.clone() })
    }

    /// Bytes of slot memory held now (0 when idle).
    pub fn memory_held(&self) -> usize {
        self.inner.state.lock().expect("hashing state").spare.iter().map(HashMemory::size).sum()
    }
}

/// One admitted hash. Dropping it unused gives the place back.
#[must_use = "a ticket holds a place in the hashing queue"]
pub struct Ticket {
    inner: Arc<Inner>,
}

impl Ticket {
    /// A PHC string of `password` at the configured cost.
    pub async fn hash(self, password: Password) -> anyhow::Result<String> {
        let cost = self.inner.cost;
        self.run(move |memory| passwords::hash(&password, cost, memory)).await?
    }

    /// Whether `password` matches the stored hash.
    pub async fn verify(self, password: String, stored: String) -> anyhow::Result<bool> {
        self.run(move |memory| passwords::verify(&password, &stored, memory)).await
    }

    /// Waits for a slot (FIFO), then runs `work` on a blocking thread with the slot's memory.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let slot = self.inner.slots.clone().acquire_owned().await.expect("the hashing semaphore is never closed");
        let output = tokio::task::spawn_blocking(move || {
            let mut memory = self.inner.state.lock().expect("hashing state").spare.pop().unwrap_or_default();
            let output = work(&mut memory);
            self.inner.state.lock().expect("hashing state").spare.push(memory);
            // The slot and the place in the queue are given back only now, even if the
            // request stopped waiting for the answer.
            drop(slot);
            drop(self);
            output
        })
        .await?;
        Ok(output)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let freed = {
            let mut state = self.inner.state.lock().expect("hashing state");
            state.admitted -= 1;
            if state.admitted == 0 {
                std::mem::take(&mut state.spare)
            } else {
                Vec::new()
            }
        };
        // Freed outside the lock: giving megabytes back to the system takes a moment.
        drop(freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost { memory_kib: 256, iterations: 1 };

    #[tokio::test]
    async fn admits_slots_plus_queue_and_refuses_the_rest() {
        let hashing = Hashing::new(CHEAP, HashingLimits { concurrency: 2, queue: 3 });
        let tickets: Vec<Ticket> = (0..5).map(|_| hashing.admit().expect("a place")).collect();
        assert!(hashing.admit().is_err());
        drop(tickets.into_iter().next());
        let ticket = hashing.admit().expect("a place again");
        let hash = ticket.hash(Password::parse("correct horse").unwrap()).await.unwrap();
        let ticket = hashing.admit().unwrap();
        assert!(ticket.verify("correct horse".to_owned(), hash).await.unwrap());
    }

    #[tokio::test]
    async fn slot_memory_is_reused_while_busy_and_freed_when_idle() {
        let hashing = Hashing::new(CHEAP, HashingLimits { concurrency: 1, queue: 4 });
        let password = || Password::parse("correct horse").unwrap();
        // Another admitted request keeps the hashing busy: the slot's memory stays for it.
        let waiting = hashing.admit().unwrap();
        hashing.admit().unwrap().hash(password()).await.unwrap();
        assert_eq!(hashing.memory_held(), 256 * 1024);
        hashing.admit().unwrap().hash(password()).await.unwrap();
        assert_eq!(hashing.memory_held(), 256 * 1024, "one slot, one buffer");
        // The last one out frees it.
        drop(waiting);
        assert_eq!(hashing.memory_held(), 0);
        hashing.admit().unwrap().hash(password()).await.unwrap();
        assert_eq!(hashing.memory_held(), 0);
    }
}
