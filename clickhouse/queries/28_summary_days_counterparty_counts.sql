-- aggregates::summary (src/history/aggregates.rs): the totals over whole UTC days alone of the
-- counterparties with an account, by id (faster than by id and name), the most entries first;
-- 27 without the partial days (read from PostgreSQL meanwhile). Those without an account are
-- one row here (id 0), and in 28_summary_days_kinds_and_externals.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 0
-- bind: 0
-- bind: 4096
SELECT counterparty_id, '' AS no_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
     GROUP BY counterparty_id
     ORDER BY count DESC
     LIMIT ?
