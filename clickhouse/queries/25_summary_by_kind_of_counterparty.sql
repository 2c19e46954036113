-- aggregates::summary (src/history/aggregates.rs): totals by kind for one counterparty
-- (counterparty_account_id=), whole days from daily_counterparty_totals.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 7
-- bind: 42
-- bind: 0
-- bind: 4294967295
-- bind: 0
-- bind: 9223372036854775807
-- bind: 0
-- bind: 0
-- bind: 0
-- bind: 0
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 7
-- bind: 7
-- bind: [0]
-- expect-rows: 1
SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
        sum(entries) AS count
 FROM (
     SELECT kind, direction, entries, amount
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND counterparty_id = ?
     UNION ALL
     SELECT kind, direction, toUInt64(1) AS entries, amount
     FROM (SELECT kind, direction, amount FROM statement_entries
         PREWHERE account_id = ?
           AND ((at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?)
             OR (at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?))
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
           AND (? = 0 OR ifNull(counterparty_account_id, 0) = ?)
           AND entry_id NOT IN (SELECT toUInt64(arrayJoin(?)))
         LIMIT 1 BY entry_id)
 )
 GROUP BY kind
 ORDER BY kind
