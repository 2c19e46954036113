-- aggregates::summary (src/history/aggregates.rs): the totals over whole UTC days of some
-- counterparties only (account ids, then external names; -1 and '' match none), as 29.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 0
-- bind: 0
-- bind: [-1, 7]
-- bind: ['', 'external']
SELECT counterparty_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
       AND (counterparty_id IN (SELECT toInt64(arrayJoin(?)))
            OR (counterparty_id = 0 AND counterparty_key IN (SELECT arrayJoin(?))))
     GROUP BY counterparty_id, counterparty_key
