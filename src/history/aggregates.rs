//! The daily totals ClickHouse keeps per account (`daily_totals`, and per counterparty
//! `daily_counterparty_totals`, fed by materialized views on `statement_entries`, see
//! clickhouse/README.md): what keeps them exact under the
//! forwarder's replays, and what retention drops of them.
//!
//! A materialized view counts every inserted row, so a batch inserted twice (the forwarder
//! crashed between its ClickHouse insert and the outbox delete) would count twice, although
//! `statement_entries` collapses the copies. So before each insert the forwarder asks which
//! entries of its batch ClickHouse already holds ([`stored_ids`]) and inserts only the others.
//! Outbox rows are locked by the step that forwards them, so no other forwarder inserts the
//! same entries meanwhile.

use std::collections::HashSet;

use super::clickhouse::ClickHouse;

/// An entry of a batch as [`stored_ids`] looks it up: id, account, time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryKey {
    pub entry_id: u64,
    pub account_id: i64,
    pub at_us: i64,
}

/// The ids among `keys` that `statement_entries` already holds. (The arrays are cast: an
/// `IN` set of another integer type matches nothing on 18.16, silently.) The look-up reads only the
/// batch's accounts over the batch's time span (primary-key and partition pruning), so it
/// costs a few milliseconds whatever the table's size.
pub async fn stored_ids(clickhouse: &ClickHouse, keys: &[EntryKey]) -> anyhow::Result<HashSet<u64>> {
    let (Some(low_us), Some(high_us)) =
        (keys.iter().map(|key| key.at_us).min(), keys.iter().map(|key| key.at_us).max())
    else {
        return Ok(HashSet::new());
    };
    let mut accounts: Vec<i64> = keys.iter().map(|key| key.account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let ids: Vec<u64> = keys.iter().map(|key| key.entry_id).collect();
    let seconds = |us: i64| u32::try_from(us.div_euclid(1_000_000).max(0)).unwrap_or(u32::MAX);
    let found: Vec<u64> = clickhouse
        .query(
            "SELECT DISTINCT entry_id
             FROM statement_entries
             PREWHERE account_id IN (SELECT toInt64(arrayJoin(?)))
               AND at >= toDateTime(?) AND at <= toDateTime(?)
               AND at_us >= ? AND at_us <= ?
               AND entry_id IN (SELECT toUInt64(arrayJoin(?)))",
        )
        .bind(&accounts)
        .bind(seconds(low_us))
        .bind(seconds(high_us))
        .bind(low_us)
        .bind(high_us)
        .bind(&ids)
        .fetch_all()
        .await?;
    Ok(found.into_iter().collect())
}

/// Drops the month `yyyymm` (a partition id like `202511`) from `statement_entries` and from
/// both tables of daily totals. The totals go first: a run that fails between the two finds the entries'
/// partition again next time and drops both (dropping a missing partition does nothing).
pub async fn drop_month(clickhouse: &ClickHouse, yyyymm: &str) -> anyhow::Result<()> {
    anyhow::ensure!(yyyymm.len() == 6 && yyyymm.chars().all(|c| c.is_ascii_digit()), "bad partition id {yyyymm:?}");
    for table in ["daily_totals", "daily_counterparty_totals", "statement_entries"] {
        clickhouse.client().query(&format!("ALTER TABLE {table} DROP PARTITION {yyyymm}")).execute().await?;
    }
    Ok(())
}
