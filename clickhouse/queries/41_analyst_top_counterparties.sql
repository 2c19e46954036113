-- Analysts (clickhouse/README.md): an account's top counterparties over [from, to) (Seoul
-- wall-clock times), one row per counterparty account (per name for the outside world), with
-- the name most recently shown; replays counted once with LIMIT 1 BY.
-- bind: 42
-- bind: '2000-01-01 00:00:00'
-- bind: '2100-01-01 00:00:00'
-- bind: 10
-- expect-rows: 2
SELECT counterparty_account_id, argMax(counterparty_name, at_us) AS latest_name,
       sumIf(amount, direction = 'in') AS in_total, sumIf(amount, direction = 'out') AS out_total,
       count() AS entries
FROM (
    SELECT at_us, direction, amount, counterparty_account_id, counterparty_name
    FROM statement_entries
    WHERE account_id = ?
      AND at >= toDateTime(?, 'Asia/Seoul') AND at < toDateTime(?, 'Asia/Seoul')
    LIMIT 1 BY entry_id
)
GROUP BY counterparty_account_id, if(isNull(counterparty_account_id), counterparty_name, '')
ORDER BY entries DESC, in_total + out_total DESC, latest_name
LIMIT ?
