-- ledger::audit::stores_agree (src/ledger/audit.rs): distinct entries per UTC month (the
-- partition) in ClickHouse, replays counted once, from the oldest instant both stores still
-- keep (whole seconds). Compared with PostgreSQL's entries and outbox of the same months.
-- bind: 0
-- expect-rows: 1
SELECT toYYYYMM(at) AS month, uniqExact(entry_id) AS entries
FROM statement_entries
WHERE at >= toDateTime(?)
GROUP BY month
ORDER BY month
