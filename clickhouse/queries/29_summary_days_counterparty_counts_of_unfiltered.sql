-- aggregates::summary (src/history/aggregates.rs): 29_summary_days_counterparty_counts_of
-- without the filters' conditions.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: [-1, 7]
-- bind: ['', 'external']
SELECT counterparty_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (counterparty_id IN (SELECT toInt64(arrayJoin(?)))
            OR (counterparty_id = 0 AND counterparty_key IN (SELECT arrayJoin(?))))
     GROUP BY counterparty_id, counterparty_key
