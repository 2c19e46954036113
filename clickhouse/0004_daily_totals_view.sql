-- Feeds `daily_totals` (0003) with every block inserted into `statement_entries` (each insert
-- of the forwarder and of the seed).
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_totals_view TO daily_totals AS
SELECT toDate(at) AS day, account_id, kind, direction, count() AS entries, sum(amount) AS amount
FROM statement_entries
GROUP BY day, account_id, kind, direction
