-- aggregates::summary (src/history/aggregates.rs): 28_summary_days_by_kind without the
-- filters' conditions.
-- bind: 42
-- bind: '1970-01-01'
-- bind: '1970-01-01'
SELECT kind AS name, sumIf(amount, direction = 'in') AS in_total,
            sumIf(amount, direction = 'out') AS out_total, sum(entries) AS count
     FROM daily_totals
     PREWHERE account_id = ? AND day >= toDate(?) AND day < toDate(?)
     GROUP BY kind
     ORDER BY kind
