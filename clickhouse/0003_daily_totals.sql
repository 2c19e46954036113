-- Daily totals per account, kept by the materialized view of `0004` as entries arrive: one
-- row per (UTC day, account, kind, direction) with the number of entries and their amount.
-- What summaries by kind and the audit read instead of the entries (`0005` has the same per
-- counterparty too, for the top counterparties and the counterparty filter).
-- SummingMergeTree adds up `entries` and `amount` of rows with the same key when parts merge;
-- until then a key can have several rows, so reads always `sum` with GROUP BY. Replays are
-- kept out by the forwarder, which inserts only the entries of a batch that ClickHouse does
-- not hold yet. No TTL: the retention job drops the monthly partitions of the daily tables
-- with those of `statement_entries`.
CREATE TABLE IF NOT EXISTS daily_totals (
    day        Date,
    account_id Int64,
    kind       String,
    direction  Enum8('in' = 1, 'out' = 2),
    entries    UInt64,
    amount     Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day, kind, direction)
