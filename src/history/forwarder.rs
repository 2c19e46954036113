//! The outbox forwarder: copies statement entries from the PostgreSQL outbox to ClickHouse,
//! at least once.
//!
//! An outbox row names the entries one transaction wrote (a ledger batch, a job chunk). One
//! step locks the oldest outbox rows up to a bounded number of entries (`FOR UPDATE ... SKIP
//! LOCKED`, so several forwarders share the work), inserts their entries into ClickHouse, then
//! deletes those outbox rows and commits. A crash after the insert and before the commit replays the batch; the
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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::aggregates::{stored_ids, EntryKey};
use super::clickhouse::ClickHouse;
use super::entry::{ClickHouseEntry, PgEntry};
use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// Entries moved in one step (one PostgreSQL transaction, one ClickHouse insert); a step may
/// exceed it by one outbox row (a job chunk's entries, bounded by the job's chunk size).
pub const BATCH_SIZE_MAX: i64 = 5_000;
/// Pause after a step that found less than a full batch. ClickHouse makes a part per insert
/// and merges parts in the background: a forwarder inserting whatever trickled in, as fast as
/// it could, gave it dozens of inserts a second under write load, and its merges took a fifth
/// of the CPU. Waiting lets entries gather into fewer, larger inserts, for at most this much
/// extra lag; a backlog (full batches) is still moved without pause.
const LINGER: Duration = Duration::from_millis(500);
/// First pause after a failure; doubled on each further failure up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A ClickHouse insert taking longer than this fails the step (the batch is retried).
const INSERT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
const INSERT_END_TIMEOUT: Duration = Duration::from_secs(30);

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
    let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
        // The lowest id is (nearly) the oldest row, and its look-up walks the primary key
        // instead of scanning a backlog.
        "SELECT at FROM statement_outbox ORDER BY id LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(oldest.map(|oldest| (now - oldest).num_milliseconds().max(1)).unwrap_or(0))
}

#[derive(Clone)]
pub struct Forwarder {
    pool: PgPool,
    clickhouse: ClickHouse,
    clock: Clock,
    metrics: Arc<Metrics>,
    batch_size: i64,
    abort_after_insert: bool,
}

impl Forwarder {
    pub fn new(pool: PgPool, clickhouse: ClickHouse, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Forwarder { pool, clickhouse, clock, metrics, batch_size: BATCH_SIZE_MAX, abort_after_insert: false }
    }

    /// Test hook: abort the whole process right after a successful ClickHouse insert, before
    /// the forwarded rows leave the outbox (a crash at the worst moment). Never set it on a
    /// forwarder that shares its process with anything else worth keeping.
    pub fn with_abort_after_insert(mut self, abort_after_insert: bool) -> Self {
        self.abort_after_insert = abort_after_insert;
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
    /// once rather than after a pause).
    pub async fn step(&self) -> anyhow::Result<Step> {
        let mut tx = self.pool.begin().await.context("forwarder: begin")?;
        // Each outbox row holds the entries of one transaction (at least one), so this many
        // rows always hold enough entries; a row is never split.
        let candidates: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT id, cardinality(entry_ids) FROM statement_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("forwarder: reading the outbox")?;
        let (outbox_ids, expected) = rows_up_to(&candidates, self.batch_size);
        if outbox_ids.is_empty() {
            tx.commit().await?;
            self.refresh_lag().await;
            return Ok(Step { moved: 0, backlog: false });
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
             FROM statement_outbox o
             CROSS JOIN LATERAL unnest(o.entry_ids) AS waiting(entry_id)
             JOIN statement_entries e ON e.id = waiting.entry_id AND e.at = o.at
             JOIN accounts a ON a.id = e.account_id
             WHERE o.id = ANY($1)
             ORDER BY e.id",
        )
        .bind(&outbox_ids)
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
        self.insert_new(&rows).await?;
        if self.abort_after_insert {
            abort_after_insert(rows.len());
        }
        let deleted = sqlx::query("DELETE FROM statement_outbox WHERE id = ANY($1)")
            .bind(&outbox_ids)
            .execute(&mut *tx)
            .await
            .context("forwarder: deleting forwarded outbox rows")?
            .rows_affected();
        // The rows were locked by this transaction, so nobody else can have removed them.
        assert_eq!(deleted as usize, outbox_ids.len(), "forwarded outbox rows vanished under their lock");
        tx.commit().await.context("forwarder: commit")?;
        self.metrics.history_entries_forwarded.add(rows.len() as u64);
        self.refresh_lag().await;
        Ok(Step { moved: rows.len(), backlog: left_behind || rows.len() as i64 >= self.batch_size })
    }

    /// Inserts the rows ClickHouse does not hold yet: all of them, unless this batch is a
    /// replay (see [`aggregates`](super::aggregates)), whose copies the daily totals would count again.
    async fn insert_new(&self, rows: &[ClickHouseEntry]) -> anyhow::Result<()> {
        let keys: Vec<EntryKey> = rows
            .iter()
            .map(|row| EntryKey { entry_id: row.entry_id, account_id: row.account_id.get(), at_us: row.at_us })
            .collect();
        let stored = stored_ids(&self.clickhouse, &keys).await.context("forwarder: looking for replayed entries")?;
        if !stored.is_empty() {
            tracing::info!(
                replayed = stored.len(),
                batch = rows.len(),
                "forwarder: skipping entries ClickHouse already holds"
            );
        }
        // An entry named by two outbox rows of one batch goes in once too.
        let mut seen = stored;
        let fresh: Vec<&ClickHouseEntry> = rows.iter().filter(|row| seen.insert(row.entry_id)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .clickhouse
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

    /// Forwards until `shutdown` fires, finishing the batch in progress. Sleeps briefly when
    /// the outbox is empty and backs off (up to 5 s) while ClickHouse or PostgreSQL fail.
    pub async fn run(self, shutdown: Shutdown) {
        let mut migrated = false;
        let mut backoff = BACKOFF_FIRST;
        tracing::info!(
            batch_size = self.batch_size,
            abort_after_insert = self.abort_after_insert,
            "history forwarder started"
        );
        while !shutdown.is_triggered() {
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
                    LINGER
                }
                Err(error) => {
                    self.metrics.history_forward_failures.add(1);
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
