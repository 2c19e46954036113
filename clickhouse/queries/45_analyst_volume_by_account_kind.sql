-- Analysts (clickhouse/README.md): money in and out per Asia/Seoul month and account kind
-- (main, savings), with how many users moved money, over [from, to) in Seoul wall-clock
-- times; replays counted once with LIMIT 1 BY. Entries stored before 0009 and not backfilled
-- show as account kind '' and owner 0.
-- bind: '2000-01-01 00:00:00'
-- bind: '2100-01-01 00:00:00'
-- expect-rows: 1
SELECT month, account_kind, sumIf(amount, direction = 'in') AS in_total,
       sumIf(amount, direction = 'out') AS out_total, count() AS entries, uniqExact(owner_user_id) AS owners
FROM (
    SELECT toStartOfMonth(toDate(at, 'Asia/Seoul')) AS month, account_kind, owner_user_id, direction, amount
    FROM statement_entries
    WHERE at >= toDateTime(?, 'Asia/Seoul') AND at < toDateTime(?, 'Asia/Seoul')
    LIMIT 1 BY entry_id
)
GROUP BY month, account_kind
ORDER BY month, account_kind
