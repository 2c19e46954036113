-- aggregates::summary (src/history/aggregates.rs): 28_summary_days_kinds_and_externals without
-- the filters' conditions.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
SELECT toUInt8(1) AS part, kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     GROUP BY kind
     UNION ALL
     SELECT toUInt8(2) AS part, counterparty_key AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?) AND counterparty_id = 0
     GROUP BY counterparty_key
