-- Statement entries: one row per user-visible side of a ledger transfer, fed from the
-- PostgreSQL outbox. Replays of an entry share the whole sorting key, so merges collapse them.
-- Monthly partitions on the entry time (UTC); `{ttl}` becomes a one-year TTL on servers that
-- support it, and nothing on older ones (the retention job drops partitions there).
CREATE TABLE IF NOT EXISTS statement_entries (
    entry_id                UInt64,
    account_id              Int64,
    at                      DateTime('UTC'),
    at_us                   Int64,
    direction               Enum8('in' = 1, 'out' = 2),
    amount                  Int64,
    balance_after           Int64,
    kind                    String,
    counterparty_account_id Nullable(Int64),
    counterparty_name       String,
    transfer_id             Nullable(Int64),
    memo                    String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (account_id, at_us, entry_id)
{ttl}
