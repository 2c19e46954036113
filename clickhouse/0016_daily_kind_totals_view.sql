-- Feeds `daily_kind_totals` (0015) with every block inserted into `statement_entries` (each
-- insert of the forwarder and of the seed).
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_kind_totals_view TO daily_kind_totals AS
SELECT toDate(at) AS day, account_id, kind, direction,
       if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key,
       count() AS entries, sum(amount) AS amount
FROM statement_entries
GROUP BY day, account_id, kind, direction, counterparty_key
