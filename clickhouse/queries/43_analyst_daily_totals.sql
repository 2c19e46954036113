-- Analysts (clickhouse/README.md): money in and out of user accounts per UTC day and kind,
-- from the daily totals (no deduplication needed: replays are kept out of them), over a
-- range of UTC days [from, to). Always aggregate: rows of one key merge only in the background.
-- bind: '2000-01-01'
-- bind: '2100-01-01'
-- expect-rows: 2
SELECT day, kind, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       sum(entries) AS entries
FROM daily_totals
WHERE day >= toDate(?) AND day < toDate(?)
GROUP BY day, kind
ORDER BY day, kind
