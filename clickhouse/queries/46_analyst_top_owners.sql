-- Analysts (clickhouse/README.md): the users who moved the most money over [from, to) in
-- Seoul wall-clock times, all their accounts together (main and savings), the money between a
-- user's own accounts included; replays counted once with LIMIT 1 BY.
-- bind: '2000-01-01 00:00:00'
-- bind: '2100-01-01 00:00:00'
-- bind: 10
-- expect-rows: 1
SELECT owner_user_id, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       sumIf(amount, account_kind = 'savings' AND direction = 'in') AS into_savings,
       uniqExact(account_id) AS accounts, count() AS entries
FROM (
    SELECT owner_user_id, account_id, account_kind, direction, amount
    FROM statement_entries
    WHERE at >= toDateTime(?, 'Asia/Seoul') AND at < toDateTime(?, 'Asia/Seoul')
    LIMIT 1 BY entry_id
)
GROUP BY owner_user_id
ORDER BY in_total + out_total DESC, owner_user_id
LIMIT ?
