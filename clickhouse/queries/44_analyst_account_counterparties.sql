-- Analysts (clickhouse/README.md): an account's counterparties over a range of UTC days, with
-- the name most recently shown and the real user name most recently recorded ('' when none
-- was), from the per-counterparty daily totals (argMaxMerge of their states).
-- bind: 42
-- bind: '2000-01-01'
-- bind: '2100-01-01'
-- expect-rows: 2
SELECT if(counterparty_id = 0, NULL, counterparty_id) AS counterparty_account_id,
       argMaxMerge(latest_name) AS latest_name, argMaxMerge(latest_user_name) AS latest_user_name,
       sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       sum(entries) AS entries
FROM daily_counterparty_totals
WHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
GROUP BY counterparty_id, counterparty_key
ORDER BY entries DESC, latest_name
