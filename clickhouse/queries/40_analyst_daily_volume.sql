-- Analysts (clickhouse/README.md): money in and out of user accounts per Asia/Seoul day over
-- a range [from, to) of Seoul wall-clock times, replays counted once with LIMIT 1 BY.
-- bind: '2000-01-01 00:00:00'
-- bind: '2100-01-01 00:00:00'
-- expect-rows: 1
SELECT day, sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       count() AS entries
FROM (
    SELECT toDate(at, 'Asia/Seoul') AS day, direction, amount
    FROM statement_entries
    WHERE at >= toDateTime(?, 'Asia/Seoul') AND at < toDateTime(?, 'Asia/Seoul')
    LIMIT 1 BY entry_id
)
GROUP BY day
ORDER BY day
