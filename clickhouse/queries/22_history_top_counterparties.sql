-- queries::tuned_summary (src/history/queries.rs): the most frequent counterparties.
-- bind: 42
-- bind: 0
-- bind: 4294967295
-- bind: 0
-- bind: 9223372036854775807
-- bind: 10
-- expect-rows: 2
SELECT counterparty_name AS name, sumIf(amount, direction = 'in') AS in_total,
       sumIf(amount, direction = 'out') AS out_total, count() AS count
FROM (
    SELECT counterparty_name, direction, amount
    FROM statement_entries
    PREWHERE account_id = ?
      AND at >= toDateTime(?) AND at <= toDateTime(?)
      AND at_us >= ? AND at_us < ?
    LIMIT 1 BY entry_id
)
GROUP BY counterparty_name
ORDER BY count DESC, name
LIMIT ?
