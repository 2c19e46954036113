-- history::agreement (src/history/agreement.rs), the audit: distinct entries of one UTC day,
-- only for a day whose rows and daily totals differ. Binds: the day's first and next
-- midnight, in seconds.
-- bind: 0
-- bind: 4294967295
-- expect-rows: 1
SELECT uniqExact(entry_id) FROM statement_entries WHERE at >= toDateTime(?) AND at < toDateTime(?)
