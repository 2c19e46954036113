-- Feeds `daily_counterparty_totals` (0005) with every block inserted into `statement_entries` (each insert
-- of the forwarder and of the seed). An entry without a real user name
-- sorts first in `latest_user_name` (key (0, 0)), so that the latest recorded name wins, as
-- argMax skips NULLs in the queries on `statement_entries`.
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_counterparty_totals_view TO daily_counterparty_totals AS
SELECT toDate(at) AS day, account_id, kind, direction, ifNull(counterparty_account_id, 0) AS counterparty_id,
       if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key,
       count() AS entries, sum(amount) AS amount,
       argMaxState(counterparty_name, (at_us, entry_id)) AS latest_name,
       argMaxState(ifNull(counterparty_user_name, ''),
                   if(isNull(counterparty_user_name), (toInt64(0), toUInt64(0)), (at_us, entry_id))) AS latest_user_name
FROM statement_entries
GROUP BY day, account_id, kind, direction, counterparty_id, counterparty_key
