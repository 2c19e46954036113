-- aggregates::summary (src/history/aggregates.rs): totals by kind for one counterparty over whole
-- UTC days from daily_counterparty_totals alone, as 25 without the partial days.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 42
SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND counterparty_id = ?
     GROUP BY kind
     ORDER BY kind
