-- aggregates::summary (src/history/aggregates.rs): 27 for some counterparties only (account ids,
-- then external names; -1 and '' match none): those of the entries added from PostgreSQL that
-- 27 did not read and that may still reach the top.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 0
-- bind: 0
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
-- bind: 0
-- bind: 0
-- bind: [0]
-- bind: [-1, 7]
-- bind: ['', 'external']
SELECT counterparty_id, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
        sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
 FROM (
     SELECT counterparty_id, counterparty_key, direction, entries, amount
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
     UNION ALL
     SELECT toInt64(ifNull(counterparty_account_id, 0)) AS counterparty_id,
            if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key, direction,
            toUInt64(1) AS entries, amount
     FROM (SELECT counterparty_account_id, counterparty_name, direction, amount FROM statement_entries
         PREWHERE account_id = ?
           AND ((at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?)
             OR (at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?))
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
           AND (? = 0 OR ifNull(counterparty_account_id, 0) = ?)
           AND entry_id NOT IN (SELECT toUInt64(arrayJoin(?)))
         LIMIT 1 BY entry_id)
 )
     WHERE counterparty_id IN (SELECT toInt64(arrayJoin(?)))
            OR (counterparty_id = 0 AND counterparty_key IN (SELECT arrayJoin(?)))
     GROUP BY counterparty_id, counterparty_key
