-- history::agreement (src/history/agreement.rs), the audit: rows of statement_entries per UTC
-- day from the first compared day (whole seconds). Reads one small column; copies of a replay
-- count until merged, so days where this differs from the daily totals are counted exactly
-- (32_audit_distinct_entries_of_a_day.sql).
-- bind: 0
-- expect-rows: 1
SELECT toDate(at) AS day, count() AS entries
FROM statement_entries
WHERE at >= toDateTime(?)
GROUP BY day
