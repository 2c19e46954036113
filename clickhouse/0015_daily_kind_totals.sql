-- Daily totals per account, kind, direction and counterparty without an account, kept by the
-- materialized view of `0016` as entries arrive: one row per (UTC day, account, kind,
-- direction, `counterparty_key`), `counterparty_key` being the name of a counterparty without
-- an account (the outside world, system accounts) and '' for entries with one. What a summary
-- of up to 31 days reads of its whole days beside the counterparties' repeats (0013): the
-- totals by kind and those of the counterparties without an account in one read of a few
-- rows a day, where `daily_totals` and `daily_counterparty_totals` took two reads, the second
-- of a row per counterparty and day. SummingMergeTree as `daily_totals` (0003): reads always
-- aggregate; replays are kept out by the forwarder; no TTL, the retention job drops its
-- monthly partitions.
CREATE TABLE IF NOT EXISTS daily_kind_totals (
    day              Date,
    account_id       Int64,
    kind             String,
    direction        Enum8('in' = 1, 'out' = 2),
    counterparty_key String,
    entries          UInt64,
    amount           Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day, kind, direction, counterparty_key)
