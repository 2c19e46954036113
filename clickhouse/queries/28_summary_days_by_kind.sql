-- aggregates::summary (src/history/aggregates.rs): totals by kind over whole UTC days from
-- daily_totals alone (the partial days read from PostgreSQL), filters as in 24.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
     GROUP BY kind
     ORDER BY kind
