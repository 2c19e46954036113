-- The entries ClickHouse held before the view of 0016 existed, into `daily_kind_totals`,
-- replays counted once, as 0007 does for `daily_totals` (whose comment says when to run it and
-- how it can go wrong).
INSERT INTO daily_kind_totals (day, account_id, kind, direction, counterparty_key, entries, amount)
SELECT toDate(at) AS day, account_id, kind, direction,
       if(isNull(counterparty_account_id), counterparty_name, '') AS counterparty_key,
       count() AS entries, sum(amount) AS amount
FROM (
    SELECT entry_id, at, account_id, kind, direction, amount, counterparty_account_id, counterparty_name
    FROM statement_entries
    LIMIT 1 BY entry_id
)
GROUP BY day, account_id, kind, direction, counterparty_key
