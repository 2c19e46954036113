-- repeats::counts (src/history/repeats.rs): the counterparties with more than `level` entries
-- in a summary's range of up to 31 days, from their rows of that level in
-- `counterparty_repeats` (each entry once), with the direction and kind filters (0 and '': any).
-- bind: 42
-- bind: 3
-- bind: '2026-11-01'
-- bind: '2026-11-30'
-- bind: 1793491200000000
-- bind: 1796083200000000
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
-- bind: 3
SELECT counterparty_id, '' AS counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, count() AS count
     FROM (
         SELECT counterparty_id, direction, amount
         FROM counterparty_repeats
         PREWHERE account_id = ? AND level = ? AND day >= toDate(?) AND day <= toDate(?) AND at_us >= ? AND at_us < ?
         WHERE (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
         LIMIT 1 BY entry_id
     )
     GROUP BY counterparty_id
     HAVING count > ?
