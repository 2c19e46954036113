-- history::closed_days (src/history/closed_days.rs): every counterparty's totals by day, kind and
-- direction of an account's closed days, which each process then keeps in memory for summaries.
-- bind: 42
-- bind: '2026-10-01'
-- bind: '2026-11-01'
SELECT toUInt32(day) AS day_number, kind, toInt8(direction) AS direction_code, counterparty_id,
            counterparty_key, sum(entries) AS entries, sum(amount) AS amount
     FROM daily_counterparty_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     GROUP BY day, kind, direction, counterparty_id, counterparty_key
