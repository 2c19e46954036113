-- queries::tuned_page (src/history/queries.rs): one window of a keyset page, newest first,
-- replays removed with LIMIT 1 BY. Binds: account, window in seconds (partition pruning),
-- window in microseconds, cursor (at_us, at_us, entry_id; no cursor: i64::MAX, 0), row limit.
-- The filters are in PREWHERE: on 18.16 that halves the work of a page, which reads about
-- one granule once the window is sized from the cursor's density hint.
-- bind: 42
-- bind: 0
-- bind: 4294967295
-- bind: 0
-- bind: 9223372036854775807
-- bind: 9223372036854775807
-- bind: 9223372036854775807
-- bind: 0
-- bind: 51
-- expect-rows: 2
SELECT entry_id, at_us, direction, amount, balance_after, kind,
       counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name
FROM statement_entries
PREWHERE account_id = ?
  AND at >= toDateTime(?) AND at <= toDateTime(?)
  AND at_us >= ? AND at_us < ?
  AND (at_us < ? OR (at_us = ? AND entry_id < ?))
ORDER BY at_us DESC, entry_id DESC
LIMIT 1 BY entry_id
LIMIT ?
