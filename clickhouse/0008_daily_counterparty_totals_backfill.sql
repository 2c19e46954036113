-- The entries ClickHouse held before the view of 0006 existed, into
-- `daily_counterparty_totals`, replays counted once, as 0007 does for `daily_totals` (whose
-- comment says when to run it and how it can go wrong).
INSERT INTO daily_counterparty_totals (day, account_id, kind, direction, counterparty_id, counterparty_key, entries, amount,
                          latest_name, latest_user_name)
SELECT toDate(at) AS day, account_id, kind, direction, ifNull(counterparty_account_id, 0) AS counterparty_id,
       if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key,
       count() AS entries, sum(amount) AS amount,
       argMaxState(counterparty_name, (at_us, entry_id)) AS latest_name,
       argMaxState(ifNull(counterparty_user_name, ''),
                   if(isNull(counterparty_user_name), (toInt64(0), toUInt64(0)), (at_us, entry_id))) AS latest_user_name
FROM (
    SELECT entry_id, at, at_us, account_id, kind, direction, amount, counterparty_account_id, counterparty_name,
           counterparty_user_name
    FROM statement_entries
    LIMIT 1 BY entry_id
)
GROUP BY day, account_id, kind, direction, counterparty_id, counterparty_key
