-- Daily totals per account and counterparty, kept by the materialized view of `0006` as
-- entries arrive: one row per (UTC day, account, kind, direction, counterparty) with the
-- number of entries, their amount, and the latest names shown and recorded for the counterparty (argMax states over
-- (at_us, entry_id), the statement's order). The counterparty is `counterparty_id` (0 when the
-- entry has none: the outside world and system accounts, which go by `counterparty_key`, their
-- name; `counterparty_key` is '' for accounts). A real user name is never empty: an empty
-- `latest_user_name` means none was recorded.
-- SummingMergeTree adds up `entries` and `amount` and merges the argMax states of rows with
-- the same key when parts merge; until then a key can have several rows, so reads always
-- aggregate (`sum`, `argMaxMerge`) with GROUP BY. Replays are kept out by the forwarder, which
-- inserts only the entries of a batch that ClickHouse does not hold yet. No TTL: the
-- retention job drops their monthly partitions with those of `statement_entries`. For totals
-- by kind without the counterparty, `daily_totals` (0003) has far fewer rows.
CREATE TABLE IF NOT EXISTS daily_counterparty_totals (
    day              Date,
    account_id       Int64,
    kind             String,
    direction        Enum8('in' = 1, 'out' = 2),
    counterparty_id  Int64,
    counterparty_key String,
    entries          UInt64,
    amount           Int64,
    latest_name      AggregateFunction(argMax, String, Tuple(Int64, UInt64)),
    latest_user_name AggregateFunction(argMax, String, Tuple(Int64, UInt64))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day, kind, direction, counterparty_id, counterparty_key)
