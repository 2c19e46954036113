-- aggregates::stored_ids (src/history/aggregates.rs), called by the forwarder before each
-- insert: which entries of the batch ClickHouse already holds (a replay after a crash between
-- the insert and the outbox delete), so that they are not inserted, and counted by the daily
-- totals, again. Binds: the batch's accounts, its time span in seconds and in microseconds,
-- its entry ids. The arrays are cast: 18.16 silently matches nothing against an IN set of
-- another integer type.
-- bind: [42,43]
-- bind: 0
-- bind: 4294967295
-- bind: 0
-- bind: 9223372036854775807
-- bind: [1,2,3]
-- expect-rows: 2
SELECT DISTINCT entry_id
FROM statement_entries
PREWHERE account_id IN (SELECT toInt64(arrayJoin(?)))
  AND at >= toDateTime(?) AND at <= toDateTime(?)
  AND at_us >= ? AND at_us <= ?
  AND entry_id IN (SELECT toUInt64(arrayJoin(?)))
