-- Analysts (clickhouse/README.md): an account's money in and out per Asia/Seoul month over
-- [from, to) (Seoul wall-clock times); replays collapsed by GROUP BY entry_id with any().
-- bind: 42
-- bind: '2000-01-01 00:00:00'
-- bind: '2100-01-01 00:00:00'
-- expect-rows: 1
SELECT toStartOfMonth(toDate(entry_at, 'Asia/Seoul')) AS month, sumIf(entry_amount, entry_direction = 'in') AS in_total,
       sumIf(entry_amount, entry_direction = 'out') AS out_total, count() AS entries
FROM (
    SELECT entry_id, any(at) AS entry_at, any(direction) AS entry_direction, any(amount) AS entry_amount
    FROM statement_entries
    WHERE account_id = ?
      AND at >= toDateTime(?, 'Asia/Seoul') AND at < toDateTime(?, 'Asia/Seoul')
    GROUP BY entry_id
)
GROUP BY month
ORDER BY month
