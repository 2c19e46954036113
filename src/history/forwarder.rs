//! The outbox forwarder: copies statement entries from the PostgreSQL outbox to ClickHouse,
//! at least once.
//!
//! An outbox row names the entries one transaction wrote (a ledger batch, a job chunk). One
//! step locks the oldest outbox rows up to a bounded number of entries (`FOR UPDATE ... SKIP
//! LOCKED`), inserts their entries into ClickHouse, then deletes those outbox rows and commits.
//! Of the forwarders of one database, one leads and steps; the others stand by to take over
//! ([`LEAD_LOCK`]). A crash after the insert and before the commit replays the batch; the
//! replay inserts only the entries ClickHouse does not hold yet (the daily totals count every
//! inserted row), and should copies arrive all the same (an insert that timed out on this side
//! and completed on the server), they carry the whole sorting key of the originals, so
//! ReplacingMergeTree merges collapse them and every read of entries deduplicates with
//! `LIMIT 1 BY entry_id` meanwhile. Rows leave
//! the outbox only once forwarded, so an entry whose transaction commits late (sequence values
//! commit out of order) is picked up by a later step, never skipped.
//!
//! A test hook ([`Forwarder::with_abort_after_insert`], `MINIPAY_FORWARDER_ABORT_AFTER_INSERT=1`)
//! kills the process at the worst moment, between the insert and the delete, so that tests
//! can show the replay for real.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use super::aggregates::{stored_ids, EntryKey};
use super::clickhouse::{shard_of, ClickHouse};
use super::entry::{ClickHouseEntry, PgEntry};
use super::pg;
use crate::clock::Clock;
use crate::config::FORWARDER_LINGER;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// Entries moved in one step (one PostgreSQL transaction, one ClickHouse insert); a step may
/// exceed it by one outbox row (a job chunk's entries, bounded by the job's chunk size). Large
/// enough that a step under write load takes everything its pause let gather: at 5,000, a
/// forwarder behind 3,000 transfers a second (6,000 entries) found every batch full and
/// stepped again at once, pausing never.
pub const BATCH_SIZE_MAX: i64 = 20_000;
/// First pause after a failure; doubled on each further failure up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The session advisory lock held by the forwarder that leads: of the forwarders of one
/// database (one per serving process, and `minipay forward`), only the leader steps, so
/// ClickHouse gets one insert per pause whatever the number of processes, where each forwarder
/// stepping made one each (two processes made half as many inserts again as one). It
/// is held until the leader's connection closes, which its process's end does too; sharing
/// the work would be safe as well (`SKIP LOCKED`), and is what happens for a moment if a
/// broken connection lets another forwarder take the lead while the first still steps.
const LEAD_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('minipay.forwarder.lead'))";
/// How often a forwarder that does not lead asks for the lead again.
const LEAD_RETRY: Duration = Duration::from_secs(1);
/// A ClickHouse insert taking longer than this fails the step (the batch is retried).
const INSERT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
const INSERT_END_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbox rows held back because their shard was down are left out of the steps for this
/// long, then tried again (so the other shards' entries move on meanwhile).
const HELD_RETRY: Duration = BACKOFF_MAX;

/// What one forwarder step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Entries moved to ClickHouse.
    pub moved: usize,
    /// Rows were left for the next step: it follows at once, without the pause.
    pub backlog: bool,
}

/// The leading outbox rows to forward in one step: as many as fit in `entries_max` entries,
/// and at least the first. Returns their ids and their entry count.
fn rows_up_to(candidates: &[(i64, i32)], entries_max: i64) -> (Vec<i64>, usize) {
    let mut ids = Vec::new();
    let mut entries: i64 = 0;
    for &(id, count) in candidates {
        let count = i64::from(count);
        if !ids.is_empty() && entries + count > entries_max {
            break;
        }
        ids.push(id);
        entries += count;
    }
    (ids, entries as usize)
}

/// An entry read from the outbox, with its account's kind and owner (columns of `0009`).
#[derive(sqlx::FromRow)]
struct OutboxEntry {
    #[sqlx(flatten)]
    entry: PgEntry,
    account_kind: String,
    /// NULL only for system accounts, which have no entries.
    owner_user_id: Option<i64>,
}

impl OutboxEntry {
    fn to_clickhouse(&self) -> anyhow::Result<ClickHouseEntry> {
        self.entry.to_clickhouse(&self.account_kind, self.owner_user_id.unwrap_or_default())
    }
}

#[cold]
fn abort_after_insert(rows: usize) -> ! {
    tracing::error!(
        rows,
        "MINIPAY_FORWARDER_ABORT_AFTER_INSERT: aborting between the ClickHouse insert and the outbox delete"
    );
    std::process::abort()
}

/// How far the read store is behind: now minus the oldest outbox entry's time, 0 only when
/// the outbox is empty. An entry waits for at least 1 ms, even when its time is `now` (a manual
/// clock stands still) or in the future of it: a lag of 0 says nothing waits.
pub async fn lag_ms(conn: &mut PgConnection, now: DateTime<Utc>) -> sqlx::Result<i64> {
    let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(pg::OLDEST_WAITING_AT).fetch_optional(conn).await?;
    Ok(pg::lag_since(oldest, now))
}

/// Outbox rows whose entries a down shard could not take, and since when.
#[derive(Default)]
struct Held {
    outbox_ids: Vec<i64>,
    since: Option<Instant>,
}

/// The shards (of a cluster) an insert could not reach, and why.
struct ShardFailures {
    shards: Vec<usize>,
    error: anyhow::Error,
}

#[derive(Clone)]
pub struct Forwarder {
    pool: PgPool,
    clickhouse: ClickHouse,
    clock: Clock,
    metrics: Arc<Metrics>,
    batch_size: i64,
    linger: Duration,
    abort_after_insert: bool,
    held: Arc<Mutex<Held>>,
}

impl Forwarder {
    pub fn new(pool: PgPool, clickhouse: ClickHouse, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let held = Arc::new(Mutex::new(Held::default()));
        Forwarder {
            pool,
            clickhouse,
            clock,
            metrics,
            batch_size: BATCH_SIZE_MAX,
            linger: FORWARDER_LINGER,
            abort_after_insert: false,
            held,
        }
    }

    /// The outbox rows to leave out of this step: those a down shard held back, until
    /// [`HELD_RETRY`] has passed.
    fn held_ids(&self) -> Vec<i64> {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match held.since {
            Some(since) if since.elapsed() < HELD_RETRY => held.outbox_ids.clone(),
            _ => Vec::new(),
        }
    }

    fn hold(&self, outbox_ids: Vec<i64>) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *held = Held { since: (!outbox_ids.is_empty()).then(Instant::now), outbox_ids };
    }

    /// Test hook: abort the whole process right after a successful ClickHouse insert, before
    /// the forwarded rows leave the outbox (a crash at the worst moment). Never set it on a
    /// forwarder that shares its process with anything else worth keeping.
    pub fn with_abort_after_insert(mut self, abort_after_insert: bool) -> Self {
        self.abort_after_insert = abort_after_insert;
        self
    }

    /// The pause after a step that found less than a full batch (see [`FORWARDER_LINGER`]).
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// A smaller batch (tests use it to see several steps); clamped to 1..=BATCH_SIZE_MAX.
    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.clamp(1, BATCH_SIZE_MAX);
        self
    }

    /// Moves one batch of outbox entries to ClickHouse; returns how many were moved.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        Ok(self.step().await?.moved)
    }

    /// One batch, and whether rows were left behind for the next (a backlog, to be moved at
    /// once rather than after a pause). On a cluster with a shard down, the entries of the
    /// other shards are moved and the outbox rows with an entry for the down shard stay (their
    /// other entries, already stored, are skipped when they are moved): the step then fails,
    /// after committing what it moved.
    pub async fn step(&self) -> anyhow::Result<Step> {
        let mut tx = self.pool.begin().await.context("forwarder: begin")?;
        let Some((outbox_ids, left_behind, rows)) = self.take_batch(&mut tx).await? else {
            tx.commit().await?;
            self.refresh_lag().await;
            return Ok(Step { moved: 0, backlog: false });
        };
        let failures = self.insert_new(&rows).await?;
        if self.abort_after_insert {
            abort_after_insert(rows.len());
        }
        let held = match &failures {
            Some(failures) => self.outbox_rows_of_shards(&mut tx, &outbox_ids, &rows, &failures.shards).await?,
            None => Vec::new(),
        };
        let done: Vec<i64> = outbox_ids.iter().copied().filter(|id| !held.contains(id)).collect();
        let deleted = sqlx::query("DELETE FROM statement_outbox WHERE id = ANY($1)")
            .bind(&done)
            .execute(&mut *tx)
            .await
            .context("forwarder: deleting forwarded outbox rows")?
            .rows_affected();
        // The rows were locked by this transaction, so nobody else can have removed them.
        assert_eq!(deleted as usize, done.len(), "forwarded outbox rows vanished under their lock");
        tx.commit().await.context("forwarder: commit")?;
        let shard_count = self.clickhouse.shard_count();
        let failed = |row: &ClickHouseEntry| {
            failures.as_ref().is_some_and(|f| f.shards.contains(&shard_of(row.account_id.get(), shard_count)))
        };
        let moved = rows.iter().filter(|row| !failed(row)).count();
        self.metrics.history_entries_forwarded.add(moved as u64);
        self.refresh_lag().await;
        self.hold(held.clone());
        if let Some(failures) = failures {
            return Err(failures.error.context(format!(
                "forwarder: ClickHouse shard(s) {:?} down: {moved} entries moved, {} outbox rows held for them",
                failures.shards.iter().map(|shard| shard + 1).collect::<Vec<_>>(),
                held.len()
            )));
        }
        Ok(Step { moved, backlog: left_behind || rows.len() as i64 >= self.batch_size })
    }

    /// Locks the oldest outbox rows (but those held for a down shard) up to the batch size and
    /// reads their entries: the rows' ids, whether rows were left for the next step, the
    /// entries as ClickHouse rows. `None` when nothing waits.
    async fn take_batch(
        &self,
        tx: &mut PgConnection,
    ) -> anyhow::Result<Option<(Vec<i64>, bool, Vec<ClickHouseEntry>)>> {
        // Each outbox row holds the entries of one transaction (at least one), so this many
        // rows always hold enough entries; a row is never split.
        let read: Vec<(i64, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, cardinality(entry_ids), at FROM statement_outbox WHERE id <> ALL($2)
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .bind(self.held_ids())
        .fetch_all(&mut *tx)
        .await
        .context("forwarder: reading the outbox")?;
        let candidates: Vec<(i64, i32)> = read.iter().map(|&(id, count, _)| (id, count)).collect();
        let (outbox_ids, expected) = rows_up_to(&candidates, self.batch_size);
        // The entries' times bound the partitions to read: without them, each entry id is
        // looked up in every month's partition.
        let (first_at, last_at) = (read.iter().map(|row| row.2).min(), read.iter().map(|row| row.2).max());
        if outbox_ids.is_empty() {
            return Ok(None);
        }
        // Rows left out because the entry limit was reached: more are waiting. (Taking every
        // row read means at most `batch_size` rows, the limit of the read, so a full read
        // shows as a full batch of entries below.)
        let left_behind = outbox_ids.len() < candidates.len();
        // The account's kind and owner never change, so a replay sends the same values.
        let entries: Vec<OutboxEntry> = sqlx::query_as(
            "SELECT e.id, e.account_id, e.at, e.direction, e.amount, e.balance_after, e.kind,
                    e.counterparty_account_id, e.counterparty_name, e.transfer_id, e.memo, e.counterparty_user_name,
                    a.kind AS account_kind, a.user_id AS owner_user_id
             FROM statement_entries e
             JOIN accounts a ON a.id = e.account_id
             WHERE e.id = ANY(ARRAY(SELECT unnest(o.entry_ids) FROM statement_outbox o WHERE o.id = ANY($1)))
               AND e.at BETWEEN $2 AND $3
             ORDER BY e.id",
        )
        .bind(&outbox_ids)
        .bind(first_at)
        .bind(last_at)
        .fetch_all(&mut *tx)
        .await
        .context("forwarder: reading the outbox entries")?;
        // An outbox row is written with its entries, in their transaction.
        anyhow::ensure!(
            entries.len() == expected,
            "forwarder: outbox rows {outbox_ids:?} name {expected} entries, {} found",
            entries.len()
        );
        let rows = entries.iter().map(OutboxEntry::to_clickhouse).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some((outbox_ids, left_behind, rows)))
    }

    /// Those of `outbox_ids` that name an entry of an account on one of `shards`.
    async fn outbox_rows_of_shards(
        &self,
        tx: &mut PgConnection,
        outbox_ids: &[i64],
        rows: &[ClickHouseEntry],
        shards: &[usize],
    ) -> anyhow::Result<Vec<i64>> {
        let shard_count = self.clickhouse.shard_count();
        let entry_ids: Vec<i64> = rows
            .iter()
            .filter(|row| shards.contains(&shard_of(row.account_id.get(), shard_count)))
            .map(|row| row.entry_id as i64)
            .collect();
        sqlx::query_scalar(
            "SELECT DISTINCT o.id FROM statement_outbox o CROSS JOIN LATERAL unnest(o.entry_ids) AS w(entry_id)
             WHERE o.id = ANY($1) AND w.entry_id = ANY($2)",
        )
        .bind(outbox_ids)
        .bind(&entry_ids)
        .fetch_all(&mut *tx)
        .await
        .context("forwarder: finding the outbox rows of a down shard")
    }

    /// Inserts the rows ClickHouse does not hold yet: all of them, unless this batch is a
    /// replay (see [`aggregates`](super::aggregates)), whose copies the daily totals would
    /// count again. On a cluster each shard gets its accounts' rows (looked up and inserted
    /// there); the shards that failed are returned, unless all did (then it is an error, as
    /// on a single server).
    async fn insert_new(&self, rows: &[ClickHouseEntry]) -> anyhow::Result<Option<ShardFailures>> {
        let shard_count = self.clickhouse.shard_count();
        let mut by_shard: Vec<Vec<&ClickHouseEntry>> = vec![Vec::new(); shard_count];
        for row in rows {
            by_shard[shard_of(row.account_id.get(), shard_count)].push(row);
        }
        let mut failures: Option<ShardFailures> = None;
        let mut tried = 0;
        for (index, shard_rows) in by_shard.iter().enumerate().filter(|(_, rows)| !rows.is_empty()) {
            tried += 1;
            let shard = self.clickhouse.shard(index);
            if let Err(error) = insert_new_into(&shard, shard_rows).await {
                let error = error.context(format!("shard {}", index + 1));
                match failures.as_mut() {
                    Some(failures) => failures.shards.push(index),
                    None => failures = Some(ShardFailures { shards: vec![index], error }),
                }
            }
        }
        match failures {
            Some(failures) if failures.shards.len() == tried => Err(failures.error),
            failures => Ok(failures),
        }
    }

    async fn refresh_lag(&self) {
        let lag = match self.pool.acquire().await {
            Ok(mut conn) => lag_ms(&mut conn, self.clock.now()).await,
            Err(error) => Err(error),
        };
        match lag {
            Ok(lag) => self.metrics.history_lag_ms.set(lag),
            Err(error) => tracing::debug!(%error, "forwarder: lag not measured"),
        }
    }

    /// Takes the lead among the database's forwarders if nobody holds it ([`LEAD_LOCK`]): the
    /// connection holding it, or `None` when another forwarder leads (or the database cannot be
    /// reached: the caller asks again later).
    async fn take_lead(&self) -> Option<PgConnection> {
        let taken = async {
            let mut conn = self.pool.acquire().await?.detach();
            let led: bool = sqlx::query_scalar(LEAD_LOCK).fetch_one(&mut conn).await?;
            Ok::<_, sqlx::Error>(led.then_some(conn))
        };
        match taken.await {
            Ok(lead) => lead,
            Err(error) => {
                tracing::debug!(%error, "forwarder: could not ask for the lead");
                None
            }
        }
    }

    /// Whether this forwarder leads, taking the lead if it can; when it cannot, after waiting
    /// [`LEAD_RETRY`] (or for `shutdown`) so that the caller asks again.
    async fn lead(&self, lead: &mut Option<PgConnection>, shutdown: &Shutdown) -> bool {
        if lead.is_some() {
            return true;
        }
        *lead = self.take_lead().await;
        if lead.is_some() {
            tracing::info!("history forwarder leads");
            return true;
        }
        // The lag gauge of every process says how far the read store is behind.
        self.refresh_lag().await;
        tokio::select! {
            _ = tokio::time::sleep(LEAD_RETRY) => {}
            _ = shutdown.wait() => {}
        }
        false
    }

    /// Forwards until `shutdown` fires, finishing the batch in progress. Only the forwarder that
    /// leads steps; the others wait, asking again every [`LEAD_RETRY`]. Sleeps briefly when
    /// the outbox is empty and backs off (up to 5 s) while ClickHouse or PostgreSQL fail.
    pub async fn run(self, shutdown: Shutdown) {
        let mut migrated = false;
        let mut backoff = BACKOFF_FIRST;
        let mut lead: Option<PgConnection> = None;
        tracing::info!(
            batch_size = self.batch_size,
            abort_after_insert = self.abort_after_insert,
            "history forwarder started"
        );
        while !shutdown.is_triggered() {
            if !self.lead(&mut lead, &shutdown).await {
                continue;
            }
            // A ClickHouse that was down at start has no table yet.
            let step = if migrated {
                self.step().await
            } else {
                self.clickhouse.migrate().await.map(|()| {
                    migrated = true;
                    Step { moved: 0, backlog: false }
                })
            };
            let pause = match step {
                Ok(step) => {
                    backoff = BACKOFF_FIRST;
                    if step.backlog {
                        // A backlog: go on at once.
                        continue;
                    }
                    self.linger
                }
                Err(error) => {
                    self.metrics.history_forward_failures.add(1);
                    // A lead whose connection broke holds nothing: ask for it again.
                    if let Some(mut conn) = lead.take() {
                        if conn.ping().await.is_ok() {
                            lead = Some(conn);
                        }
                    }
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "history forwarder step failed"
                    );
                    let pause = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait() => {}
            }
        }
        tracing::info!("history forwarder stopped");
    }
}

/// Inserts those of `rows` that `clickhouse` (one server, the shard of their accounts) does
/// not hold yet.
async fn insert_new_into(clickhouse: &ClickHouse, rows: &[&ClickHouseEntry]) -> anyhow::Result<()> {
    let keys: Vec<EntryKey> = rows
        .iter()
        .map(|row| EntryKey { entry_id: row.entry_id, account_id: row.account_id.get(), at_us: row.at_us })
        .collect();
    let stored = stored_ids(clickhouse, &keys).await.context("forwarder: looking for replayed entries")?;
    if !stored.is_empty() {
        tracing::info!(
            replayed = stored.len(),
            batch = rows.len(),
            "forwarder: skipping entries ClickHouse already holds"
        );
    }
    // An entry named by two outbox rows of one batch goes in once too.
    let mut seen = stored;
    let fresh: Vec<&ClickHouseEntry> = rows.iter().copied().filter(|row| seen.insert(row.entry_id)).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let mut insert = clickhouse
        .client()
        .insert::<ClickHouseEntry>("statement_entries")
        .await?
        .with_timeouts(Some(INSERT_SEND_TIMEOUT), Some(INSERT_END_TIMEOUT));
    for row in fresh {
        insert.write(row).await.context("forwarder: ClickHouse insert")?;
    }
    insert.end().await.context("forwarder: ClickHouse insert")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rows_up_to;

    #[test]
    fn a_step_takes_whole_rows_up_to_the_entry_limit() {
        assert_eq!(rows_up_to(&[], 10), (vec![], 0));
        assert_eq!(rows_up_to(&[(1, 4), (2, 4), (3, 4)], 10), (vec![1, 2], 8));
        assert_eq!(rows_up_to(&[(1, 4), (2, 6), (3, 1)], 10), (vec![1, 2], 10));
        // A row larger than the limit (a job chunk) still moves, alone.
        assert_eq!(rows_up_to(&[(7, 10_000), (8, 1)], 5_000), (vec![7], 10_000));
    }
}
