-- repeats::counts (src/history/repeats.rs): 29_summary_repeat_counts with the direction and
-- kind filters (0 and '': any).
-- bind: 42
-- bind: 3
-- bind: '2026-11-01'
-- bind: '2026-11-30'
-- bind: 1793491200000000
-- bind: 1796083200000000
-- bind: 1
-- bind: 1
-- bind: 'transfer'
-- bind: 'transfer'
-- bind: 3
SELECT counterparty_id, uniqExact(entry_id) AS count
     FROM counterparty_repeats
     PREWHERE account_id = ? AND level = ? AND day >= toDate(?) AND day <= toDate(?) AND at_us >= ? AND at_us < ?
     WHERE (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
     GROUP BY counterparty_id
     HAVING count > ?
