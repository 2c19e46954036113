-- aggregates::summary (src/history/aggregates.rs): 28_summary_days_external_counts without
-- the filters' conditions.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
SELECT toInt64(0) AS no_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?) AND counterparty_id = 0
     GROUP BY counterparty_key
