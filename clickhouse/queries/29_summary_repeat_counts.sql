-- repeats::counts (src/history/repeats.rs): the counterparties with more than `level` entries
-- in a summary's range of up to 31 days, from their rows of that level in
-- `counterparty_repeats`, each entry counted once; their money comes from PostgreSQL. This
-- form without filters; 29_summary_repeat_counts_filtered with the direction and kind ones.
-- bind: 42
-- bind: 3
-- bind: '2026-11-01'
-- bind: '2026-11-30'
-- bind: 1793491200000000
-- bind: 1796083200000000
-- bind: 3
SELECT counterparty_id, uniqExact(entry_id) AS count
     FROM counterparty_repeats
     PREWHERE account_id = ? AND level = ? AND day >= toDate(?) AND day <= toDate(?) AND at_us >= ? AND at_us < ?
     GROUP BY counterparty_id
     HAVING count > ?
