//! Plain reads from a PostgreSQL hot standby, without ever showing a client less than the
//! primary had committed when its request arrived (docs/scaling.md).
//!
//! Several processes write to one primary, so no process knows every recent write. A routed
//! read therefore asks the primary for its WAL position (`pg_current_wal_lsn()`) at its arrival
//! and reads from the standby once the standby has replayed that far
//! (`pg_last_wal_replay_lsn()`); if that takes longer than `MINIPAY_REPLICA_WAIT_MS`, it reads
//! from the primary. Everything committed before the read arrived lies before that position,
//! so either way the read sees it.
//!
//! Both positions come from [`Probe`]s: one query at a time per probe, on a connection of its
//! own (never queued behind reads), and every reader waiting for a probe shares its answer.
//! A reader only takes an answer whose query started after the reader arrived: readers that
//! arrive while a query runs wait for the next one, which starts as soon as that one ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ReplicaConfig;
use crate::store::Warm;

/// Which server answered a read (`X-Read-Source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadSource {
    Primary,
    Replica,
}

impl ReadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadSource::Primary => "primary",
            ReadSource::Replica => "replica",
        }
    }
}

/// Where plain reads go: the primary, or a standby that has caught up. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    primary: PgPool,
    replica: Option<Arc<Replica>>,
}

struct Replica {
    pool: PgPool,
    wait: Duration,
    primary_position: Probe,
    replayed_position: Probe,
    /// The highest replay position seen: the standby has replayed at least this far.
    replayed: AtomicI64,
    /// After a failed probe the standby is left alone until then (a standby that is down costs
    /// reads no waiting).
    resting_until: Mutex<Option<Instant>>,
}

/// Pause between two looks at the standby's replay position while a read waits for it.
const REPLAY_POLL: Duration = Duration::from_millis(1);
/// How long the standby is left alone after a probe failed.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Reads {
    /// Every read on `primary`.
    pub fn primary_only(primary: PgPool) -> Self {
        Reads { primary, replica: None }
    }

    /// Reads on the standby of `config` when one is configured. Connects lazily: a standby
    /// that is down (or has not replayed the database's creation yet) does not stop a start.
    pub fn new(
        primary: PgPool,
        primary_url: &str,
        config: &ReplicaConfig,
        (pool_size, warm): (u32, Option<Warm>),
    ) -> anyhow::Result<Self> {
        let Some(url) = &config.url else {
            return Ok(Reads::primary_only(primary));
        };
        let replica = Replica {
            pool: lazy_pool(url, pool_size, crate::store::POOL_ACQUIRE_TIMEOUT, warm)?,
            wait: config.wait,
            primary_position: Probe::new(
                lazy_pool(primary_url, 1, REST_AFTER_FAILURE, None)?,
                "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8",
            ),
            replayed_position: Probe::new(
                lazy_pool(url, 1, REST_AFTER_FAILURE, None)?,
                "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8",
            ),
            replayed: AtomicI64::new(-1),
            resting_until: Mutex::new(None),
        };
        Ok(Reads { primary, replica: Some(Arc::new(replica)) })
    }

    /// The pool a read arriving now should use, and which server that is.
    pub async fn route(&self) -> (ReadSource, PgPool) {
        match &self.replica {
            Some(replica) if replica.caught_up().await => (ReadSource::Replica, replica.pool.clone()),
            _ => (ReadSource::Primary, self.primary.clone()),
        }
    }
}

fn lazy_pool(url: &str, size: u32, acquire_timeout: Duration, warm: Option<Warm>) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("minipay").options(crate::store::SESSION_SETTINGS);
    Ok(crate::store::pool_options(size, acquire_timeout, warm).connect_lazy_with(options))
}

impl Replica {
    /// Whether the standby has replayed everything the primary had written when this was
    /// called, found out within `wait`.
    async fn caught_up(&self) -> bool {
        let deadline = Instant::now() + self.wait;
        if self.resting() {
            return false;
        }
        let Some(target) = self.position(&self.primary_position, deadline).await else {
            return false;
        };
        loop {
            if self.replayed.load(Ordering::Acquire) >= target {
                return true;
            }
            let Some(replayed) = self.position(&self.replayed_position, deadline).await else {
                return false;
            };
            self.replayed.fetch_max(replayed, Ordering::AcqRel);
            if replayed >= target {
                return true;
            }
            if Instant::now() + REPLAY_POLL >= deadline {
                return false;
            }
            tokio::time::sleep(REPLAY_POLL).await;
        }
    }

    /// A position from `probe`, by `deadline`; `None` when it is late, failed or is NULL (a
    /// standby no longer in recovery replays nothing).
    async fn position(&self, probe: &Probe, deadline: Instant) -> Option<i64> {
        match tokio::time::timeout_at(deadline, probe.read()).await {
            Ok(Ok(position)) => position,
            Ok(Err(error)) => {
                tracing::warn!(%error, "replica routing: a WAL position query failed; reading from the primary");
                *self.resting_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some(Instant::now() + REST_AFTER_FAILURE);
                None
            }
            Err(_) => None,
        }
    }

    fn resting(&self) -> bool {
        let mut until = self.resting_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }
}

/// What a probe's query answered: a position (NULL as `None`) or the error, as text.
type Answer = Result<Option<i64>, String>;

/// One query, run at most once at a time, whose answer every reader that arrived before it
/// started shares.
struct Probe {
    shared: Arc<ProbeShared>,
}

/// A query's run, as a future that owns what it needs.
type Query = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

struct ProbeShared {
    query: Query,
    state: Mutex<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    /// A query runs now.
    running: bool,
    /// Readers that arrived while it runs: the next query answers them.
    next: Option<watch::Sender<Option<Answer>>>,
}

impl Probe {
    /// `sql` (one position) on `pool`.
    fn new(pool: PgPool, sql: &'static str) -> Self {
        Probe::of(Box::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(&pool).await.map_err(|error| error.to_string())
            })
        }))
    }

    fn of(query: Query) -> Self {
        Probe { shared: Arc::new(ProbeShared { query, state: Mutex::new(ProbeState::default()) }) }
    }

    /// The answer of a query that started after this call.
    async fn read(&self) -> Answer {
        let mut answer = {
            let mut state = self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(next) = &state.next {
                next.subscribe()
            } else {
                let (sender, receiver) = watch::channel(None);
                if state.running {
                    state.next = Some(sender);
                } else {
                    state.running = true;
                    tokio::spawn(self.shared.clone().run(sender));
                }
                receiver
            }
        };
        let found = match answer.wait_for(|found| found.is_some()).await {
            Ok(found) => found.clone(),
            Err(_) => None,
        };
        found.unwrap_or_else(|| Err("the probe stopped without an answer".to_owned()))
    }
}

impl ProbeShared {
    /// Runs the query for the readers of `sender`, then for those who arrived meanwhile, until
    /// none waits. Runs in a task of its own: a reader that gives up does not cancel a query
    /// others wait for.
    async fn run(self: Arc<Self>, mut sender: watch::Sender<Option<Answer>>) {
        loop {
            let answer = (self.query)().await;
            sender.send_replace(Some(answer));
            let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match state.next.take() {
                Some(next) => sender = next,
                None => {
                    state.running = false;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A probe whose nth query (from 1) answers n once `release` lets it end.
    fn counting_probe() -> (Probe, Arc<AtomicUsize>, Arc<tokio::sync::Semaphore>) {
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (count, gate) = (started.clone(), release.clone());
        let probe = Probe::of(Box::new(move || {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.map_err(|error| error.to_string())?.forget();
                Ok(Some(n as i64))
            })
        }));
        (probe, started, release)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn readers_share_a_query_only_if_it_started_after_they_arrived() {
        let (probe, started, release) = counting_probe();
        let probe = Arc::new(probe);
        let read = |probe: &Arc<Probe>| {
            let probe = probe.clone();
            tokio::spawn(async move { probe.read().await })
        };
        let first = read(&probe);
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // Arrived while query 1 runs: they wait for query 2, which starts when 1 ends.
        let (second, third) = (read(&probe), read(&probe));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        release.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(Some(1)));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        release.add_permits(1);
        assert_eq!((second.await.unwrap(), third.await.unwrap()), (Ok(Some(2)), Ok(Some(2))));
        // Nobody waits: the next reader starts a query of its own.
        let fourth = read(&probe);
        settle().await;
        release.add_permits(1);
        assert_eq!(fourth.await.unwrap(), Ok(Some(3)));
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }
}
