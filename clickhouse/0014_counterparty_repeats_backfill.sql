-- The rows of `counterparty_repeats` (0013) for the entries ClickHouse already holds: each
-- entry with a counterparty account and at least three other entries of the same account and
-- counterparty within 31 days (2,678,400,000,000 µs), counted among its three nearest on
-- either side (all a count up to three needs). Writing a row twice does no harm (see 0013), so
-- this may run again, and the seed runs it after its inserts. It runs once per chunk of
-- accounts (the placeholders of its last condition, filled in by `src/history/clickhouse.rs`),
-- so that the arrays of one chunk fit in a server's memory limit.
INSERT INTO counterparty_repeats (day, account_id, level, at_us, entry_id, counterparty_id, kind, direction, amount)
SELECT toDate(intDiv(entry.1, 1000000)) AS day, account_id, toUInt8(3) AS level,
       entry.1 AS at_us, entry.2 AS entry_id, counterparty_id, entry.3 AS kind, entry.4 AS direction,
       entry.5 AS amount
FROM (
    SELECT account_id, counterparty_id, entry, near
    FROM (
        SELECT account_id, counterparty_id, entries,
               arrayMap(i -> least(3, arrayCount(step -> i + step >= 1 AND i + step <= length(entries)
                                                   AND abs(entries[i + step].1 - entries[i].1) <= 2678400000000,
                                                 [-3, -2, -1, 1, 2, 3])),
                        arrayEnumerate(entries)) AS nears
        FROM (
            SELECT account_id, assumeNotNull(counterparty_account_id) AS counterparty_id,
                   arraySort(groupArray((at_us, entry_id, kind, direction, amount))) AS entries
            FROM (
                SELECT entry_id, account_id, at_us, kind, direction, amount, counterparty_account_id
                FROM statement_entries
                WHERE isNotNull(counterparty_account_id) AND account_id % {chunks} = {chunk}
                LIMIT 1 BY entry_id
            )
            GROUP BY account_id, counterparty_id
        )
    )
    ARRAY JOIN entries AS entry, nears AS near
    WHERE near >= 3
)
