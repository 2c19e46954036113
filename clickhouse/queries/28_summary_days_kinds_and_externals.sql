-- aggregates::summary (src/history/aggregates.rs): the totals over whole UTC days by kind
-- (part 1, from daily_totals) and of every counterparty without an account, by name (part 2),
-- beside 28_summary_days_counterparty_counts: one query instead of two.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 0
-- bind: 0
SELECT toUInt8(1) AS part, kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
     GROUP BY kind
     UNION ALL
     SELECT toUInt8(2) AS part, counterparty_key AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?) AND counterparty_id = 0
     GROUP BY counterparty_key
