-- queries::tuned_summary (src/history/queries.rs): the counterparties with the most entries,
-- one per counterparty account (per name for the outside world and system accounts, which
-- have none), with the name most recently shown and the real user name most recently
-- recorded (argMax skips NULLs). The latest is by (at_us, entry_id), the statement's order.
-- bind: 42
-- bind: 0
-- bind: 4294967295
-- bind: 0
-- bind: 9223372036854775807
-- bind: 10
-- expect-rows: 2
SELECT counterparty_account_id AS account_id, argMax(counterparty_name, (at_us, entry_id)) AS name,
       argMax(counterparty_user_name, (at_us, entry_id)) AS user_name,
       sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       count() AS count
FROM (
    SELECT entry_id, at_us, counterparty_account_id, counterparty_name, counterparty_user_name,
           direction, amount
    FROM statement_entries
    PREWHERE account_id = ?
      AND at >= toDateTime(?) AND at <= toDateTime(?)
      AND at_us >= ? AND at_us < ?
    LIMIT 1 BY entry_id
)
GROUP BY counterparty_account_id, if(isNull(counterparty_account_id), counterparty_name, '')
ORDER BY count DESC, name, account_id
LIMIT ?
