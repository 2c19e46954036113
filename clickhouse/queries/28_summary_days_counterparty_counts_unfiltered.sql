-- aggregates::summary (src/history/aggregates.rs): 28_summary_days_counterparty_counts for a
-- summary without filters: without their conditions, which cost ClickHouse 18.16 CPU on every row.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 4096
SELECT counterparty_id, '' AS no_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     GROUP BY counterparty_id
     ORDER BY count DESC
     LIMIT ?
