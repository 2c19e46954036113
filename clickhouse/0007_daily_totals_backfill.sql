-- The entries ClickHouse held before the views of 0004 and 0006 existed, into `daily_totals`,
-- replays counted once (0008 does the same for `daily_counterparty_totals`). Applied once,
-- after the views: entries that arrive between the view and the backfill (a forwarder of
-- another server inserting at that very moment) would be counted twice, which the audit
-- reports per day; migrate with the forwarders stopped when ClickHouse already holds entries
-- (clickhouse/README.md, "Daily totals", says how to rebuild a month).
INSERT INTO daily_totals (day, account_id, kind, direction, entries, amount)
SELECT toDate(at) AS day, account_id, kind, direction, count() AS entries, sum(amount) AS amount
FROM (
    SELECT entry_id, at, account_id, kind, direction, amount
    FROM statement_entries
    LIMIT 1 BY entry_id
)
GROUP BY day, account_id, kind, direction
