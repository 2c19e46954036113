-- history::agreement (src/history/agreement.rs), the audit: entries and amount per UTC day as
-- the daily totals count them (every inserted row: a doubled entry shows here).
-- bind: 0
-- expect-rows: 1
SELECT day, sum(entries) AS entries, sum(amount) AS amount
FROM daily_totals
WHERE day >= toDate(toDateTime(?))
GROUP BY day
