-- Backfill of 0009, step 3, per month (partition, e.g. 202611) with forwarders stopped: the
-- month's rows with their account's kind and owner (rows of accounts missing from
-- backfill_account_owners keep '' and 0; replays are copied as they are). INSERT ... SELECT
-- goes by position: the new values take the last two columns.
-- The bind is the month of the check's sample rows (yesterday); give the month, e.g. 202611.
-- bind: toYYYYMM(toTimeZone(now() - 86400, 'UTC'))
INSERT INTO statement_entries_backfill
SELECT entry_id, account_id, at, at_us, direction, amount, balance_after, kind, counterparty_account_id,
       counterparty_name, transfer_id, memo, counterparty_user_name,
       if(owner_kind = '', account_kind, owner_kind) AS filled_account_kind,
       if(owner_id = 0, owner_user_id, owner_id) AS filled_owner_user_id
FROM statement_entries
ANY LEFT JOIN (
    SELECT account_id, account_kind AS owner_kind, owner_user_id AS owner_id FROM backfill_account_owners
) AS owners USING account_id
WHERE toYYYYMM(at) = ?
