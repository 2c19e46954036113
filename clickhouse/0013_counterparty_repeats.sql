-- The entries whose counterparty account repeats, for the top counterparties of a summary of
-- up to 31 days (`src/history/repeats.rs`): an entry has a row of `level` 3 when at least three
-- other entries of its account with the same counterparty account lie within 31 days of it
-- (lower levels would work alike; nothing reads them, so none are written). A counterparty
-- with more than three entries in such a range has a row for each of them, so the rows count
-- exactly every counterparty with more than three entries there, and any other has at most
-- three.
-- On the busiest account, the rows of 30 days are a few hundred where its daily
-- counterparty totals are some 30,000.
-- The forwarder writes the rows of the entries it moves (and of their neighbours, whose counts
-- a new entry raises) before the entries themselves, and `0014` those of entries already held;
-- a row may be written more than once (a replayed batch, a neighbour of several entries), so
-- reads count each entry once (`uniqExact(entry_id)`, or `LIMIT 1 BY entry_id`). No TTL: the
-- retention job drops its monthly partitions with those of `statement_entries`.
CREATE TABLE IF NOT EXISTS counterparty_repeats (
    day             Date,
    account_id      Int64,
    level           UInt8,
    at_us           Int64,
    entry_id        UInt64,
    counterparty_id Int64,
    kind            String,
    direction       Enum8('in' = 1, 'out' = 2),
    amount          Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, level, day, at_us, entry_id)
