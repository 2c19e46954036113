-- aggregates::read_repeats (src/history/aggregates.rs): the totals of a summary's whole days
-- by kind and counterparty without an account ('' for entries with one), from
-- `daily_kind_totals`, with the direction and kind filters (0 and '': any); beside
-- 29_summary_repeat_counts.
-- bind: 42
-- bind: '2026-11-02'
-- bind: '2026-12-01'
-- bind: 0
-- bind: 0
-- bind: ''
-- bind: ''
SELECT kind, counterparty_key, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_kind_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     WHERE (? = 0 OR toInt8(direction) = ?) AND (? = '' OR kind = ?)
     GROUP BY kind, counterparty_key
