-- aggregates::summary (src/history/aggregates.rs): the counterparties with the most
-- entries: the argMax states of the daily totals merged with the edges' own, so the latest
-- names are those of the whole range. An empty user_name means none was recorded. Used only
-- when the counts of 27 cannot decide the top (ties at its last place past the rows read).
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
-- bind: 10
-- expect-rows: 2
SELECT if(counterparty_id = 0, NULL, counterparty_id) AS account_id, argMaxMerge(latest_name) AS name,
        argMaxMerge(latest_user_name) AS user_name, sumIf(amount, direction = 'in') AS in_total,
        sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
 FROM (
     SELECT counterparty_id, counterparty_key, direction, entries, amount, latest_name, latest_user_name
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
       AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?) AND (? = 0 OR counterparty_id = ?)
     UNION ALL
     SELECT toInt64(ifNull(counterparty_account_id, 0)) AS counterparty_id,
            if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key, direction,
            count() AS entries, sum(amount) AS amount,
            argMaxState(counterparty_name, (at_us, entry_id)) AS latest_name,
            argMaxState(ifNull(counterparty_user_name, ''),
                        if(isNull(counterparty_user_name), (toInt64(0), toUInt64(0)), (at_us, entry_id))) AS latest_user_name
     FROM (SELECT entry_id, at_us, direction, amount, counterparty_account_id, counterparty_name, counterparty_user_name FROM statement_entries
         PREWHERE account_id = ?
           AND ((at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?)
             OR (at >= toDateTime(?) AND at <= toDateTime(?) AND at_us >= ? AND at_us < ?))
           AND (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
           AND (? = 0 OR ifNull(counterparty_account_id, 0) = ?)
           AND entry_id NOT IN (SELECT toUInt64(arrayJoin(?)))
         LIMIT 1 BY entry_id)
     GROUP BY counterparty_id, counterparty_key, direction
 )
 GROUP BY counterparty_id, counterparty_key
 ORDER BY count DESC, name, account_id
 LIMIT ?
